"""``yalgaar-receiver send``: post realistic envelopes to a receiver, as Yalgaar would."""

from __future__ import annotations

import math
import time

import click

from .. import wire
from ..encryption import MessageKeys
from ..exceptions import YalgaarError
from ..testing import Payload, bind, message, message_envelope, presence_envelope, unbind
from ._http import MAX_BATCH, post, summarize, timeout_option, url_option


@click.command()
@click.argument("source", type=click.Choice(sorted(set(wire.SOURCES.values()))))
@click.option(
    "--url", required=True, callback=url_option, help="The receiver's URL for this source."
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
    "--encrypt-key",
    help="Message only: encrypt each message with this AES key, as Yalgaar's SDKs do "
    "(needs the crypto extra).",
)
@timeout_option
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
    encrypt_key: str | None,
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
    if source == "presence" and encrypt_key is not None:
        raise click.UsageError("--encrypt-key is for message webhooks; presence items have none.")
    if encrypt_key is not None:
        try:
            MessageKeys([encrypt_key])
        except YalgaarError as error:
            raise click.BadParameter(str(error), param_hint="--encrypt-key") from None
    requests = math.ceil(count / batch)
    failed = 0
    for number in range(requests):
        if number:
            time.sleep(interval)
        first = number * batch
        size = min(batch, count - first)
        body = _envelope(source, client_key, channel, uuid, action, text, first, size, encrypt_key)
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
    encrypt_key: str | None,
) -> Payload:
    if source == "presence":
        build = bind if action == "bind" else unbind
        return presence_envelope(
            *(build(channel, uuid) for _ in range(size)), client_key=client_key
        )
    items = (
        message(
            channel,
            uuid,
            text if text is not None else {"n": n, "text": "hello"},
            encrypt_key=encrypt_key,
        )
        for n in range(first + 1, first + size + 1)
    )
    return message_envelope(*items, client_key=client_key)
