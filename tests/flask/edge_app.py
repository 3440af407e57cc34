"""The app the edge tests run under gunicorn: handlers that misbehave on purpose, by channel.

* ``cancel``: an ``async def`` handler whose task is cancelled (``asyncio.CancelledError``);
* ``exit``: a handler that raises ``SystemExit`` (on the thread pool, with ``EDGE_POOL=1``);
* ``slow``: a handler that works for ``EDGE_SLOW`` seconds;
* every event that reaches a handler is written to ``EDGE_RECORD``, one ``channel uuid`` line.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time

from flask import Flask

from yalgaar_receiver import Event, Receiver, ThreadPoolDispatcher, create_blueprint
from yalgaar_receiver.delivery import JsonLinesDeadLetterSink

KEY = "ck-0123456789abcdef"
TOKEN = "edge-0123456789abcdef0123"

_lock = threading.Lock()


def _record(event: Event) -> None:
    with _lock, open(os.environ["EDGE_RECORD"], "a", encoding="utf-8") as file:
        file.write(f"{event.channel} {event.uuid}\n")


def create_app() -> Flask:
    dispatcher = None
    if os.environ.get("EDGE_POOL") == "1":
        sink = JsonLinesDeadLetterSink(os.environ["EDGE_DEAD_LETTERS"], fsync=False)
        dispatcher = ThreadPoolDispatcher(max_workers=1, queue_size=50, dead_letters=sink)
    receiver = Receiver([KEY], dispatcher=dispatcher)

    @receiver.on_message
    def record(event: Event) -> None:
        _record(event)

    @receiver.on_message(channel="slow")
    def slow(event: Event) -> None:
        time.sleep(float(os.environ.get("EDGE_SLOW", "0.5")))  # simulated work

    @receiver.on_message(channel="exit")
    def exit_(event: Event) -> None:
        raise SystemExit(3)

    @receiver.on_message(channel="cancel")
    async def cancelled(event: Event) -> None:
        raise asyncio.CancelledError

    app = Flask(__name__)
    app.register_blueprint(create_blueprint(receiver, url_tokens=[TOKEN]), url_prefix="/yalgaar")
    return app
