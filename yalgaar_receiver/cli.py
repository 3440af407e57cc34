"""``yalgaar-receiver``: send, receive, replay and check Yalgaar webhooks from a terminal.

The command line is an application built on the package, like the examples: it is the only
module besides :mod:`~yalgaar_receiver.blueprint` that imports Flask and Werkzeug (to serve a
throwaway receiver) and the only one that imports click. HTTP goes out through the standard
library's ``urllib.request``, with a timeout on every request.

Every error a user can cause (a URL that refuses connections, a file that is not JSON lines) is
one line on stderr and a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import secrets
import socket
import sys
import threading
import time
import typing as t
import urllib.error
import urllib.parse
import urllib.request
import warnings
from datetime import datetime
from pathlib import Path

import click

from . import __version__, signals
from .events import (
    Batch,
    Event,
    MessageEvent,
    PresenceEvent,
    Rejection,
    UnknownEvent,
)
from .exceptions import InvalidEnvelopeError, YalgaarError, YalgaarSecurityWarning
from .parsing import parse_envelope
from .receiver import Receiver
from .testing import Payload, bind, message, message_envelope, presence_envelope, unbind

if t.TYPE_CHECKING:
    from flask import Flask
    from werkzeug.serving import BaseWSGIServer

__all__ = ["main"]

#: Yalgaar puts at most this many items in one request (and drops the rest of a burst).
MAX_BATCH: t.Final = 200
#: Seconds to wait for a receiver's answer before giving up on a request.
DEFAULT_TIMEOUT: t.Final = 10.0
_USER_AGENT: t.Final = f"yalgaar-receiver-cli/{__version__}"


# -- HTTP out ----------------------------------------------------------------------------------


def post(url: str, body: bytes, *, timeout: float = DEFAULT_TIMEOUT) -> tuple[int, bytes]:
    """POST ``body`` as JSON; return the status and the answer's body, whatever the status.

    :raises click.ClickException: the URL is malformed, refuses connections, or does not answer
        within ``timeout`` seconds; the message is one line.
    """
    _check_url(url)
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": _USER_AGENT},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as error:
        # A non-2xx answer is an answer: report it, do not fail on it.
        with error:
            return int(error.code), error.read()
    except urllib.error.URLError as error:
        raise click.ClickException(f"Cannot reach {url}: {_reason(error.reason)}.") from None
    except TimeoutError:
        raise click.ClickException(f"{url} did not answer within {timeout:g} s.") from None
    except OSError as error:
        raise click.ClickException(f"Cannot reach {url}: {_reason(error)}.") from None


def _check_url(url: str) -> str:
    """Refuse anything but an http(s) URL with a host, before a request is built."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise click.ClickException(
            f"{url!r} is not an http:// or https:// URL; "
            "expected something like http://127.0.0.1:5000/presence."
        )
    return url


def _url_option(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        return _check_url(value)
    except click.ClickException as error:
        raise click.BadParameter(error.message) from None


def _reason(reason: object) -> str:
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused (is a receiver running there?)"
    if isinstance(reason, TimeoutError):
        return "timed out"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror.lower()
    return str(reason)


def summarize(status: int, answer: bytes) -> str:
    """One line for an answer: the receiver's summary, or the start of whatever came back."""
    try:
        document = json.loads(answer)
    except ValueError:
        text = answer.decode("utf-8", "replace").strip().splitlines()
        return f"{status} {text[0][:120] if text else ''}".rstrip()
    if isinstance(document, dict) and "accepted" in document:
        rejected = document.get("rejected") or []
        count = len(rejected) if isinstance(rejected, list) else rejected
        return (
            f"{status} accepted={document['accepted']} rejected={count} "
            f"failed={document.get('failed', 0)}"
        )
    if isinstance(document, dict) and "title" in document:
        return f"{status} {document['title']}: {document.get('detail', '')}".rstrip(": ")
    return f"{status} {json.dumps(document)[:120]}"


# -- printing events ---------------------------------------------------------------------------


def describe(event: Event) -> str:
    """One aligned line for an event, as ``listen``, ``validate`` and ``demo`` print it."""
    when = event.timestamp.isoformat().replace("+00:00", "Z") if event.timestamp else "-"
    if isinstance(event, MessageEvent):
        kind, detail = "message", f"message={_clip(event.message)}"
    elif isinstance(event, PresenceEvent):
        kind, detail = event.event_type, f"action={event.raw_action!r}"
    elif isinstance(event, UnknownEvent):
        kind, detail = "unknown", f"source={event.source!r}"
    else:
        kind, detail = event.event_type, ""
    extra = f" extra={json.dumps(dict(event.extra))}" if event.extra else ""
    return (
        f"{kind:<8} channel={event.channel!r} uuid={event.uuid!r} at={when} {detail}{extra}"
    ).rstrip()


def describe_rejection(rejection: Rejection) -> str:
    """One line for a malformed item."""
    problems = "; ".join(
        f"{field}: {' '.join(map(str, messages)) if isinstance(messages, list) else messages}"
        for field, messages in rejection.errors.items()
    )
    return f"rejected envelope {rejection.envelope} item {rejection.index}: {problems}"


def _clip(text: str, limit: int = 80) -> str:
    shown = repr(text)
    return shown if len(shown) <= limit else shown[: limit - 4] + "...'"


def _stamp() -> str:
    return datetime.now().strftime("%H:%M:%S")


# -- the commands ------------------------------------------------------------------------------


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="yalgaar-receiver")
def main() -> None:
    """Send, receive, replay and check Yalgaar webhooks.

    \b
    Try it:
      yalgaar-receiver demo
      yalgaar-receiver listen --port 5000
      yalgaar-receiver send presence --url http://127.0.0.1:5000/presence \\
          --client-key ck-test --channel lobby --uuid alice
    """


@main.command()
@click.argument("source", type=click.Choice(["presence", "message"]))
@click.option(
    "--url", required=True, callback=_url_option, help="The receiver's URL for this source."
)
@click.option("--client-key", required=True, help="The clientKey to put in each envelope.")
@click.option("--channel", required=True, help="The channel of every item.")
@click.option("--uuid", required=True, help="The client id of every item.")
@click.option(
    "--action",
    type=click.Choice(["bind", "unbind"]),
    default="bind",
    show_default=True,
    help="Presence only: what the client did.",
)
@click.option(
    "--message",
    "text",
    help='Message only: the text published [default: JSON text like {"n":1,"text":"hello"}].',
)
@click.option(
    "--count",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="How many items to send in all.",
)
@click.option(
    "--batch",
    type=click.IntRange(1, MAX_BATCH),
    default=MAX_BATCH,
    show_default=True,
    help="Items per request; Yalgaar sends at most 200.",
)
@click.option(
    "--interval",
    type=click.FloatRange(min=0),
    default=2.0,
    show_default=True,
    help="Seconds between requests (Yalgaar batches every 2 s).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_TIMEOUT,
    show_default=True,
    help="Seconds to wait for each answer.",
)
def send(
    source: str,
    url: str,
    client_key: str,
    channel: str,
    uuid: str,
    action: str,
    text: str | None,
    count: int,
    batch: int,
    interval: float,
    timeout: float,
) -> None:
    """Post realistic envelopes to a receiver, as Yalgaar would.

    Each request carries up to --batch items, one request every --interval seconds, with
    timestamps of now in seconds; each answer is printed as its status and the receiver's
    summary. The exit status is 1 when any answer was not 2xx.

    \b
    Example:
      yalgaar-receiver send message --url http://127.0.0.1:5000/message \\
          --client-key ck-test --channel lobby --uuid alice --message hi --count 3
    """
    if source == "presence" and text is not None:
        raise click.UsageError("--message is for message webhooks; presence items have none.")
    requests = math.ceil(count / batch)
    failed = 0
    for number in range(requests):
        if number:
            time.sleep(interval)
        first = number * batch
        size = min(batch, count - first)
        body = _envelope(source, client_key, channel, uuid, action, text, first, size)
        status, answer = post(url, body.to_bytes(), timeout=timeout)
        failed += not 200 <= status < 300
        click.echo(
            f"request {number + 1}/{requests}: {size} item(s) -> {summarize(status, answer)}"
        )
    if failed:
        raise SystemExit(1)


def _envelope(
    source: str,
    client_key: str,
    channel: str,
    uuid: str,
    action: str,
    text: str | None,
    first: int,
    size: int,
) -> Payload:
    if source == "presence":
        build = bind if action == "bind" else unbind
        return presence_envelope(
            *(build(channel, uuid) for _ in range(size)), client_key=client_key
        )
    items = (
        message(channel, uuid, text if text is not None else {"n": n, "text": "hello"})
        for n in range(first + 1, first + size + 1)
    )
    return message_envelope(*items, client_key=client_key)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="The address to bind.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=5000, show_default=True, help="0: any."
)
@click.option(
    "--client-key",
    "client_keys",
    multiple=True,
    help="A clientKey to accept (repeatable); without one, every key is accepted.",
)
@click.option(
    "--capture",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Append every JSON body received to this JSON-lines file.",
)
def listen(host: str, port: int, client_keys: tuple[str, ...], capture: Path | None) -> None:
    """Run a throwaway receiver that prints every event as it arrives.

    It answers on /presence, /message and / like an app with the blueprint. Point the Yalgaar
    dashboard's Presence and Message URLs at it (through a tunnel of your own) to see the real
    payloads; --capture keeps them, one body per line, for `replay` and `validate`. Stop it
    with Ctrl-C.

    \b
    Example:
      yalgaar-receiver listen --port 5000 --client-key ck-test --capture seen.jsonl
    """
    receiver = _printing_receiver(client_keys)
    app = _app(receiver, capture)
    server = _server(app, host, port)
    where = f"http://{_url_host(host)}:{server.server_port}"
    keys = f"{len(client_keys)} client key(s)" if client_keys else "ANY clientKey (no key given)"
    click.echo(f"Listening on {where}/presence and {where}/message, accepting {keys}.")
    if capture is not None:
        click.echo(f"Capturing bodies to {capture}.")
    click.echo("Press Ctrl-C to stop.")
    try:
        with _own_output(), _printing_refusals(receiver):
            server.serve_forever()
    except KeyboardInterrupt:
        click.echo("Stopped.")
    finally:
        server.server_close()


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@click.option("--url", required=True, callback=_url_option, help="Where to post each body.")
@click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True),
    default=10.0,
    show_default=True,
    help="Requests per second, at most.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_TIMEOUT,
    show_default=True,
    help="Seconds to wait for each answer.",
)
def replay(file: str, url: str, rate: float, timeout: float) -> None:
    """Re-post the bodies of a JSON-lines file (one body per line, as `listen --capture`
    writes them), then print how many answers had each status.

    The whole file is checked before anything is sent. The exit status is 1 when any answer
    was not 2xx.

    \b
    Example:
      yalgaar-receiver replay seen.jsonl --url http://127.0.0.1:5000/ --rate 5
    """
    bodies = _json_lines(file)
    statuses: dict[int, int] = {}
    with click.progressbar(bodies, label="Replaying", show_pos=True) as bar:
        for number, body in enumerate(bar):
            if number:
                time.sleep(1 / rate)
            status, _ = post(url, body, timeout=timeout)
            statuses[status] = statuses.get(status, 0) + 1
    counts = ", ".join(f"{status}: {n}" for status, n in sorted(statuses.items()))
    click.echo(f"Replayed {len(bodies)} bodies to {url}; statuses {counts or 'none'}.")
    if any(not 200 <= status < 300 for status in statuses):
        raise SystemExit(1)


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, allow_dash=True))
@click.option(
    "--source",
    type=click.Choice(["presence", "message"]),
    help="The endpoint the bodies came to, for envelopes without a source.",
)
def validate(files: tuple[str, ...], source: str | None) -> None:
    """Parse bodies without a server: print the typed events, or what is wrong.

    A FILE holds one JSON body, or one body per line (JSON lines); '-' reads stdin. The exit
    status is 1 when a body is refused or an item is rejected, so it fits the CI of an app
    that keeps sample payloads.

    \b
    Example:
      yalgaar-receiver validate tests/payloads/*.json
    """
    bad = 0
    for file in files:
        for label, body in _bodies(file):
            try:
                batch = parse_envelope(body, source_hint=source)
            except InvalidEnvelopeError as error:
                click.echo(f"{label}: refused: {error}")
                bad += 1
                continue
            bad += bool(batch.rejected)
            _print_batch(label, batch)
    if bad:
        raise SystemExit(1)


def _print_batch(label: str, batch: Batch) -> None:
    verdict = "ok" if not batch.rejected else f"{len(batch.rejected)} rejected"
    click.echo(f"{label}: {len(batch.events)} event(s), {verdict}")
    for event in batch.events:
        click.echo(f"  {describe(event)}")
    for rejection in batch.rejected:
        click.echo(f"  {describe_rejection(rejection)}")


@main.command()
@click.option(
    "--delay",
    type=click.FloatRange(0, 2),
    default=0.3,
    show_default=True,
    help="Seconds between the simulated requests.",
)
def demo(delay: float) -> None:
    """Start a receiver on 127.0.0.1 and send it simulated Yalgaar traffic.

    Clients bind and unbind, publish JSON messages (a filtered handler takes the orders), one
    item is malformed, one request has the wrong clientKey and one lacks the URL token; every
    handler prints what it sees, and the demo ends by itself in a few seconds.

    \b
    Example:
      yalgaar-receiver demo --delay 0
    """
    key = "ck-demo0123456789"
    receiver = Receiver(client_keys=[key])
    online: dict[str, set[str]] = {}

    @receiver.on_bind
    def joined(event: PresenceEvent) -> None:
        online.setdefault(event.channel, set()).add(event.uuid or "?")
        click.echo(f"    handler: {event.uuid} joined #{event.channel}; online: {_who(online)}")

    @receiver.on_unbind
    def left(event: PresenceEvent) -> None:
        online.get(event.channel, set()).discard(event.uuid or "?")
        click.echo(f"    handler: {event.uuid} left #{event.channel}; online: {_who(online)}")

    @receiver.on_message(channel="orders-*")
    def order(event: MessageEvent) -> None:
        click.echo(f"    handler: order on #{event.channel}: {event.json()}")

    @receiver.on_message(channel="lobby")
    def chat(event: MessageEvent) -> None:
        try:
            said = event.json().get("text")
        except (ValueError, AttributeError):
            said = event.message
        click.echo(f"    handler: {event.uuid} in #{event.channel} says {said!r}")

    def rejected(sender: Receiver, rejection: Rejection, **extra: t.Any) -> None:
        click.echo(f"    signal:  {describe_rejection(rejection)}")

    def refused(sender: Receiver, error: YalgaarError, **extra: t.Any) -> None:
        click.echo(f"    signal:  request refused: {error}")

    at = int(time.time())
    # The URL token is what keeps forgers out (docs/security.md): the dashboard gets URLs with it.
    token = secrets.token_urlsafe(8)
    presence_url, message_url = f"/yalgaar/{token}/presence", f"/yalgaar/{token}/message"
    traffic: list[tuple[str, str, Payload]] = [
        (
            "alice and bob open the lobby",
            presence_url,
            presence_envelope(
                bind("lobby", "alice", at=at),
                # Actions are read in any case and spacing.
                {**bind("lobby", "bob", at=at), "action": "Bind"},
                client_key=key,
            ),
        ),
        (
            "they chat and bob orders tea (JSON text, as the SDKs publish it)",
            message_url,
            message_envelope(
                message("lobby", "alice", {"text": "hi bob", "typing": False}, at=at + 1),
                message("lobby", "bob", {"text": "hi alice!", "typing": False}, at=at + 2),
                message("orders-42", "bob", {"item": "tea", "qty": 2}, at=at + 2),
                client_key=key,
            ),
        ),
        (
            "a batch with one malformed item (no channel): the others still arrive",
            message_url,
            message_envelope(
                message("lobby", "carol", "plain text works too", at=at + 3),
                {"uuid": "mallory", "timestamp": str(at + 3), "message": "lost channel"},
                client_key=key,
            ),
        ),
        (
            "someone without the client key tries to post",
            presence_url,
            presence_envelope(bind("lobby", "eve", at=at + 4), client_key="ck-guessed"),
        ),
        (
            "someone who read the client key out of a client app, but lacks the URL token",
            "/yalgaar/presence",
            presence_envelope(bind("lobby", "mallory", at=at + 4), client_key=key),
        ),
        (
            "bob leaves",
            presence_url,
            presence_envelope(unbind("lobby", "bob", at=at + 5), client_key=key),
        ),
    ]
    app = _app(receiver, None, "/yalgaar", url_tokens=[token])
    server = _server(app, "127.0.0.1", 0)
    root = f"http://127.0.0.1:{server.server_port}"
    # A short poll interval, so that shutdown() at the end does not wait half a second.
    thread = threading.Thread(
        target=server.serve_forever, args=(0.05,), name="yalgaar-demo", daemon=True
    )
    click.echo(f"Receiver listening on {root}{presence_url} and {root}{message_url}")
    with (
        _own_output(),
        signals.event_rejected.connected_to(rejected, sender=receiver),
        signals.envelope_rejected.connected_to(refused, sender=receiver),
    ):
        thread.start()
        try:
            for number, (what, path, body) in enumerate(traffic, 1):
                time.sleep(delay)
                click.echo(f"\n[{number}/{len(traffic)}] {what}")
                data = body["items"]["data"]
                sample = json.dumps(data[0], separators=(",", ":"))
                click.echo(f"  POST {path}: {len(data)} item(s), the first {sample}")
                status, answer = post(root + path, body.to_bytes(), timeout=5)
                click.echo(f"  -> {summarize(status, answer)}")
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)
    click.echo(f"\nDone: {len(traffic)} requests; online now: {_who(online)}.")


def _who(online: dict[str, set[str]]) -> str:
    names = sorted(set().union(*online.values())) if online else []
    return ", ".join(names) or "nobody"


# -- serving -----------------------------------------------------------------------------------


def _printing_receiver(client_keys: t.Sequence[str]) -> Receiver:
    try:
        receiver = Receiver(client_keys=list(client_keys), allow_unauthenticated=not client_keys)
    except YalgaarError as error:
        raise click.BadParameter(str(error), param_hint="--client-key") from None

    @receiver.on_event
    def show(event: Event) -> None:
        click.echo(f"{_stamp()} {describe(event)}")

    return receiver


@contextlib.contextmanager
def _printing_refusals(receiver: Receiver) -> t.Iterator[None]:
    """Print rejected items and refused requests while the block runs."""

    def rejected(sender: Receiver, rejection: Rejection, **extra: t.Any) -> None:
        click.echo(f"{_stamp()} {describe_rejection(rejection)}")

    def refused(sender: Receiver, error: YalgaarError, **extra: t.Any) -> None:
        click.echo(f"{_stamp()} refused ({type(error).__name__}): {error}")

    with (
        signals.event_rejected.connected_to(rejected, sender=receiver),
        signals.envelope_rejected.connected_to(refused, sender=receiver),
    ):
        yield


def _app(
    receiver: Receiver,
    capture: Path | None,
    prefix: str = "",
    url_tokens: t.Sequence[str] = (),
) -> Flask:
    from flask import Flask

    from .blueprint import create_blueprint

    app = Flask("yalgaar_receiver.cli")
    # A local tool, not a deployment: `listen` takes no URL token and says on its first line which
    # keys it accepts. The warning (and, with no key at all, its log line) would only repeat
    # that, so it is acknowledged here (docs/cli.md). The demo shows a URL token at work.
    with warnings.catch_warnings(), _quiet_package_log():
        warnings.simplefilter("ignore", YalgaarSecurityWarning)
        blueprint = create_blueprint(
            receiver, url_tokens=list(url_tokens) or None, allow_client_key_only=True
        )
        app.register_blueprint(blueprint, url_prefix=prefix or None)
    if capture is not None:
        app.wsgi_app = _Capture(app.wsgi_app, capture, receiver.max_body_bytes)  # type: ignore[method-assign]
    return app


class _Capture:
    """WSGI middleware that appends each JSON body to a JSON-lines file before the app runs.

    It sits in front of Flask because the blueprint reads the body as a stream, once.
    """

    def __init__(self, app: t.Any, path: Path, limit: int) -> None:
        self.app = app
        self.path = path
        self.limit = limit
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, t.Any], start_response: t.Any) -> t.Any:
        import io

        if environ.get("REQUEST_METHOD") == "POST":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            if length:
                body = environ["wsgi.input"].read(min(length, self.limit + 1))
            elif environ.get("wsgi.input_terminated"):  # a chunked body: read to its end
                body = environ["wsgi.input"].read(self.limit + 1)
            else:
                body = b""
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
            self._keep(body)
        return self.app(environ, start_response)

    def _keep(self, body: bytes) -> None:
        try:
            document = json.loads(body.decode("utf-8-sig"))
        except ValueError:
            return  # not JSON: nothing a JSON-lines file can hold; `listen` prints the refusal
        line = json.dumps(document, separators=(",", ":"), ensure_ascii=False)
        with self.lock, self.path.open("a", encoding="utf-8") as file:
            file.write(line + "\n")


@contextlib.contextmanager
def _quiet_package_log() -> t.Iterator[None]:
    """Silence the package's log lines for the block, and put the logger back afterwards."""
    package = logging.getLogger("yalgaar_receiver")
    propagate = package.propagate
    silent = logging.NullHandler()
    package.addHandler(silent)
    package.propagate = False
    try:
        yield
    finally:
        package.removeHandler(silent)
        package.propagate = propagate


@contextlib.contextmanager
def _own_output() -> t.Iterator[None]:
    """Let the command's own lines speak: silence Werkzeug's access log and the package's log
    lines (each refusal is already printed), and put both back afterwards, so that a test
    running the command in-process keeps its logging as it was."""
    werkzeug = logging.getLogger("werkzeug")
    level = werkzeug.level
    werkzeug.setLevel(logging.ERROR)
    try:
        with _quiet_package_log():
            yield
    finally:
        werkzeug.setLevel(level)


def _server(app: Flask, host: str, port: int) -> BaseWSGIServer:
    from werkzeug.serving import make_server

    # Werkzeug answers a busy port with two lines of its own and an exit; try the address
    # first (with the same SO_REUSEADDR as its server) so the user gets one line from us.
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
        return make_server(host, port, app, threaded=True)
    except OSError as error:
        raise click.ClickException(
            f"Cannot listen on {host}:{port}: {_reason(error)}; pick another --port."
        ) from None


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


# -- reading files -----------------------------------------------------------------------------


def _read(file: str) -> bytes:
    if file == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(file).read_bytes()
    except OSError as error:
        raise click.ClickException(f"Cannot read {file}: {_reason(error)}.") from None


def _bodies(file: str) -> t.Iterator[tuple[str, bytes]]:
    """The bodies in a file: the whole file when it is one JSON document, else one per line."""
    data = _read(file)
    name = "<stdin>" if file == "-" else file
    try:
        json.loads(data.decode("utf-8-sig"))
    except ValueError:
        pass
    else:
        yield name, data
        return
    lines = [(n, line) for n, line in enumerate(data.splitlines(), 1) if line.strip()]
    if len(lines) <= 1:
        # One body that is not JSON: let the parser say what is wrong with it.
        yield name, data
        return
    for number, line in lines:
        yield f"{name}:{number}", line


def _json_lines(file: str) -> list[bytes]:
    """Every non-blank line of a JSON-lines file, each checked to be JSON."""
    data = _read(file)
    name = "<stdin>" if file == "-" else file
    bodies = []
    for number, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        try:
            json.loads(line.decode("utf-8-sig"))
        except UnicodeDecodeError:
            raise click.ClickException(f"{name}:{number}: not UTF-8 text.") from None
        except ValueError as error:
            raise click.ClickException(
                f"{name}:{number}: not a JSON line ({error}); expected one JSON body per line."
            ) from None
        bodies.append(line)
    if not bodies:
        raise click.ClickException(f"{name} holds no JSON lines.")
    return bodies
