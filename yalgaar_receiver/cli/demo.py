"""``yalgaar-receiver demo``: a receiver on 127.0.0.1 with simulated Yalgaar traffic through it."""

from __future__ import annotations

import json
import secrets
import threading
import time
import typing as t

import click

from .. import signals
from ..events import MessageEvent, PresenceEvent, Rejection
from ..exceptions import YalgaarError
from ..receiver import Receiver
from ..testing import Payload, bind, message, message_envelope, presence_envelope, unbind
from ._http import post, summarize
from ._output import describe_rejection, own_output
from ._serve import app, server


@click.command()
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
        click.echo(f"    handler: order on #{event.channel}: {event.json(default=event.message)}")

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
    running = server(app(receiver, None, "/yalgaar", url_tokens=[token]), "127.0.0.1", 0)
    root = f"http://127.0.0.1:{running.server_port}"
    # A short poll interval, so that shutdown() at the end does not wait half a second.
    thread = threading.Thread(
        target=running.serve_forever, args=(0.05,), name="yalgaar-demo", daemon=True
    )
    click.echo(f"Receiver listening on {root}{presence_url} and {root}{message_url}")
    with (
        own_output(),
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
            running.shutdown()
            running.server_close()
            thread.join(timeout=5)
    click.echo(f"\nDone: {len(traffic)} requests; online now: {_who(online)}.")


def _who(online: dict[str, set[str]]) -> str:
    names = sorted(set().union(*online.values())) if online else []
    return ", ".join(names) or "nobody"
