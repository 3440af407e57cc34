"""Internal: HTTP out, through the standard library's ``urllib.request``, with a timeout on
every request; and one line for each answer.
"""

from __future__ import annotations

import json
import typing as t
import urllib.error
import urllib.parse
import urllib.request

import click

from .._version import __version__

MAX_BATCH: t.Final = 200
#: Seconds to wait for a receiver's answer before giving up on a request.
DEFAULT_TIMEOUT: t.Final = 10.0
_USER_AGENT: t.Final = f"yalgaar-receiver-cli/{__version__}"


def post(url: str, body: bytes, *, timeout: float = DEFAULT_TIMEOUT) -> tuple[int, bytes]:
    """POST ``body`` as JSON; return the status and the answer's body, whatever the status.

    :raises click.ClickException: the URL is malformed, refuses connections, or does not answer
        within ``timeout`` seconds; the message is one line.
    """
    check_url(url)
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
        raise click.ClickException(f"Cannot reach {url}: {reason(error.reason)}.") from None
    except TimeoutError:
        raise click.ClickException(f"{url} did not answer within {timeout:g} s.") from None
    except OSError as error:
        raise click.ClickException(f"Cannot reach {url}: {reason(error)}.") from None


#: ``--timeout``, as every command that posts takes it.
timeout_option: t.Final = click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_TIMEOUT,
    show_default=True,
    help="Seconds to wait for each answer.",
)


def check_url(url: str) -> str:
    """Refuse anything but an http(s) URL with a host, before a request is built."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise click.ClickException(
            f"{url!r} is not an http:// or https:// URL; "
            "expected something like http://127.0.0.1:5000/presence."
        )
    return url


def url_option(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        return check_url(value)
    except click.ClickException as error:
        raise click.BadParameter(error.message) from None


def reason(error: object) -> str:
    """A network error as a few words for a one-line message."""
    if isinstance(error, ConnectionRefusedError):
        return "connection refused (is a receiver running there?)"
    if isinstance(error, TimeoutError):
        return "timed out"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror.lower()
    return str(error)


#: What an error status from a receiver means, and what to check; the answer's own words
#: come first.
STATUS_HINTS: t.Final[t.Mapping[int, str]] = {
    400: "the receiver could not read the body as a Yalgaar envelope",
    403: "not authenticated: check --client-key, and the URL token or credentials in the URL",
    404: (
        "no receiver route at this URL: check its path (the blueprint's prefix, then "
        "/presence, /message or /, with the token segment when the receiver takes a URL token)"
    ),
    405: "the URL takes GET, HEAD and POST only",
    413: "the body is larger than the receiver's max_body_bytes, or has more than max_items",
    415: "the receiver reads bodies as they are, or compressed with gzip or deflate",
    500: "a handler raised; the receiver's log has the traceback, and the sender will retry",
    503: "the receiver cannot take events now; send again after Retry-After",
}


def summarize(status: int, answer: bytes) -> str:
    """One line for an answer: the receiver's summary, or what came back and what the status
    means; then each warning the receiver gave, on a line of its own."""
    try:
        document = json.loads(answer)
    except ValueError:
        document = None
    if isinstance(document, dict) and "accepted" in document:
        rejected = document.get("rejected") or []
        count = len(rejected) if isinstance(rejected, list) else rejected
        line = (
            f"{status} accepted={document['accepted']} rejected={count} "
            f"failed={document.get('failed', 0)}"
        )
        if document.get("dead_lettered"):
            line += f" dead_lettered={document['dead_lettered']}"
        warnings = document.get("warnings") or []
        return "\n".join([line, *(f"  warning: {w}" for w in warnings if isinstance(w, str))])
    if isinstance(document, dict) and "title" in document:
        said = f"{document['title']}: {document.get('detail', '')}".rstrip(": ")
    elif document is not None:
        said = json.dumps(document)[:120]
    else:
        # Not the receiver's JSON (an HTML error page of the app or a proxy): its first line.
        text = answer.decode("utf-8", "replace").strip().splitlines()
        said = text[0][:120] if text else ""
    hint = STATUS_HINTS.get(status)
    line = f"{status} {said}".rstrip()
    return f"{line} ({hint})" if hint and not 200 <= status < 300 else line
