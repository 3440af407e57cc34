"""Internal: a throwaway receiver app and the server it runs on, for ``listen`` and ``demo``."""

from __future__ import annotations

import io
import json
import socket
import threading
import typing as t
import warnings
from pathlib import Path

import click
from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server

from ..encryption import MessageKeys
from ..events import Event
from ..exceptions import YalgaarError, YalgaarSecurityWarning
from ..flask import blueprint_settings, create_blueprint
from ..receiver import Receiver
from ._http import reason
from ._output import describe, quiet_package_log, stamp


def printing_receiver(client_keys: t.Sequence[str], message_keys: t.Sequence[str] = ()) -> Receiver:
    """A receiver that prints every event; any key is accepted when none is given. With
    ``message_keys``, messages are decrypted, and one that none decrypts is rejected."""
    try:
        keys = MessageKeys(message_keys) if message_keys else None
    except YalgaarError as error:
        raise click.BadParameter(str(error), param_hint="--message-key") from None
    try:
        receiver = Receiver(
            client_keys=list(client_keys),
            allow_unauthenticated=not client_keys,
            message_keys=keys,
        )
    except YalgaarError as error:
        raise click.BadParameter(str(error), param_hint="--client-key") from None

    @receiver.on_event
    def show(event: Event) -> None:
        click.echo(f"{stamp()} {describe(event)}")

    return receiver


def app(
    receiver: Receiver,
    capture: Path | None,
    prefix: str = "",
    url_tokens: t.Sequence[str] = (),
) -> Flask:
    """A Flask app with the receiver's blueprint, and ``capture`` in front of it."""
    flask_app = Flask("yalgaar_receiver.cli")
    # A local tool, not a deployment: `listen` takes no URL token and says on its first line which
    # keys it accepts. The warning (and, with no key at all, its log line) would only repeat
    # that, so it is acknowledged here (docs/cli.md). The demo shows a URL token at work.
    with warnings.catch_warnings(), quiet_package_log():
        warnings.simplefilter("ignore", YalgaarSecurityWarning)
        blueprint = create_blueprint(
            receiver, url_tokens=list(url_tokens) or None, allow_client_key_only=True
        )
        flask_app.register_blueprint(blueprint, url_prefix=prefix or None)
    if capture is not None:
        limit = blueprint_settings(flask_app).max_body_bytes
        flask_app.wsgi_app = _Capture(flask_app.wsgi_app, capture, limit)  # type: ignore[method-assign]
    return flask_app


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


def server(app: Flask, host: str, port: int) -> BaseWSGIServer:
    """A threaded Werkzeug server for ``app``; a busy port is one line, not a traceback."""
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
            f"Cannot listen on {host}:{port}: {reason(error)}; pick another --port."
        ) from None


def url_host(host: str) -> str:
    """``host`` as it is written in a URL."""
    return f"[{host}]" if ":" in host else host
