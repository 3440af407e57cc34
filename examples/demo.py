"""What ``make demo`` runs: a receiver on 127.0.0.1 and simulated Yalgaar traffic through it.

It starts the receiver on a free port in a background thread, posts the kind of envelopes Yalgaar
sends (a presence batch, a message batch, one with a malformed item, one with a wrong client key),
prints what the handlers saw and what the server answered, then stops.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request

from flask import Flask
from werkzeug.serving import make_server

from yalgaar_receiver import (
    BindEvent,
    MessageEvent,
    Receiver,
    Rejection,
    UnbindEvent,
    create_blueprint,
    signals,
)

KEY = "ck-0123456789abcdef"


def build_app() -> tuple[Flask, Receiver]:
    receiver = Receiver(client_keys=[KEY])

    @receiver.on_bind
    def joined(event: BindEvent) -> None:
        print(f"  handler: {event.uuid} joined {event.channel} at {event.timestamp}")

    @receiver.on_unbind
    def left(event: UnbindEvent) -> None:
        print(f"  handler: {event.uuid} left {event.channel} ({event.raw_action!r})")

    @receiver.on_message(channel="orders-*")
    def order(event: MessageEvent) -> None:
        print(f"  handler: order on {event.channel}: {event.json()}")

    @receiver.on_message
    def chat(event: MessageEvent) -> None:
        print(f"  handler: {event.uuid} said {event.message!r} on {event.channel}")

    def rejected(sender: Receiver, rejection: Rejection) -> None:
        print(f"  rejected item {rejection.index}: {dict(rejection.errors)}")

    signals.event_rejected.connect(rejected, sender=receiver, weak=False)

    app = Flask("yalgaar-demo")
    # A demo on 127.0.0.1 only; a deployment adds a URL token instead (docs/security.md).
    app.config["YALGAAR_ALLOW_CLIENT_KEY_ONLY"] = True
    app.register_blueprint(create_blueprint(receiver), url_prefix="/yalgaar")
    return app, receiver


def envelope(source: str, items: list[dict[str, object]], key: str = KEY) -> bytes:
    return json.dumps({"items": {"source": source, "clientKey": key, "data": items}}).encode()


def presence(channel: str, uuid: str, at: int, action: str) -> dict[str, object]:
    # Yalgaar's doc types every field as a string, the timestamp in seconds included.
    return {"channel": channel, "uuid": uuid, "timestamp": str(at), "action": action}


def message(channel: str, uuid: str, at: int, text: str) -> dict[str, object]:
    return {"channel": channel, "uuid": uuid, "timestamp": str(at), "message": text}


def post(base: str, path: str, body: bytes) -> None:
    request = urllib.request.Request(base + path, data=body, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            status, answer = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, answer = error.code, error.read()
    print(f"  -> {status} {answer.decode().strip()}")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="  log: %(message)s")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no access log in the demo
    app, _ = build_app()
    server = make_server("127.0.0.1", 0, app)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_port}"
    now = int(time.time())
    print(f"Receiver listening on {base}/yalgaar (presence and message URLs)\n")
    try:
        print("POST /yalgaar/presence: two clients bind, one leaves")
        post(
            base,
            "/yalgaar/presence",
            envelope(
                "Presence",
                [
                    presence("lobby", "User-1a2b", now, "bind"),
                    presence("lobby", "User-3c4d", now, "bind"),
                    presence("lobby", "User-1a2b", now + 1, "unbind"),
                ],
            ),
        )
        print("\nPOST /yalgaar/message: JSON text and plain text")
        order = json.dumps({"item": "tea", "qty": 2})
        post(
            base,
            "/yalgaar/message",
            envelope(
                "Message",
                [
                    message("orders-42", "User-3c4d", now + 2, order),
                    message("lobby", "User-3c4d", now + 3, "hello"),
                ],
            ),
        )
        print("\nPOST /yalgaar/presence: one malformed item among good ones")
        missing: dict[str, object] = {
            "uuid": "User-7a8b",
            "timestamp": str(now + 4),
            "action": "bind",
        }
        post(
            base,
            "/yalgaar/presence",
            envelope("Presence", [presence("lobby", "User-5e6f", now + 4, "Bind"), missing]),
        )
        print("\nPOST /yalgaar/presence with a client key that is not configured")
        post(base, "/yalgaar/presence", envelope("Presence", [], key="ck-ffffffffffffffff"))
    finally:
        server.shutdown()
        thread.join(timeout=5)
    print("\nDone: the receiver is stopped.")


if __name__ == "__main__":
    main()
