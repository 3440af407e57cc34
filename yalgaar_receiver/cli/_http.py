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
