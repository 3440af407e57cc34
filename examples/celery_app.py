"""Answer Yalgaar at once, run the handlers on Celery workers, with Redis as the broker.

The web process validates each request, publishes one Celery task per event and answers; the
workers import this same module, so the handlers below run there, unchanged. From the project's
root, with a Redis server on 127.0.0.1:6379::

    pip install 'yalgaar-receiver[celery]' gunicorn
    export YALGAAR_CLIENT_KEYS=ck-0123456789abcdef
    export YALGAAR_URL_TOKENS=$(openssl rand -hex 24)  # the secret in the webhook URL

    # the workers (as many as you like, on any machine that reaches the broker)
    celery -A examples.celery_app:celery_app worker -Q yalgaar --concurrency 4 --loglevel INFO

    # the web side
    gunicorn --workers 2 --bind 127.0.0.1:8000 'examples.celery_app:create_app()'

Then set the dashboard's Presence URL to ``https://your-host/yalgaar/<token>/presence`` and its
Message URL to ``https://your-host/yalgaar/<token>/message`` (see ``docs/security.md``). When
Redis is down, the web side answers 503 with ``Retry-After``; handlers that keep failing end in
``yalgaar-dead-letters.jsonl`` on the worker, and ``python -m examples.celery_app replay`` runs
them again. ``docs/delivery.md`` explains the guarantees.

Environment: ``YALGAAR_BROKER_URL`` (default ``redis://127.0.0.1:6379/0``),
``YALGAAR_CLIENT_KEYS`` (comma-separated), ``YALGAAR_URL_TOKENS`` (comma-separated),
``YALGAAR_DEAD_LETTERS`` (the dead-letter file).
"""

from __future__ import annotations

import os
import sys
import typing as t

from celery import Celery
from flask import Flask

from yalgaar_receiver import BindEvent, MessageEvent, Receiver, UnbindEvent, create_blueprint
from yalgaar_receiver.delivery import JsonLinesDeadLetterSink, replay
from yalgaar_receiver.delivery.celery import CeleryDispatcher

BROKER_URL = os.environ.get("YALGAAR_BROKER_URL", "redis://127.0.0.1:6379/0")

celery_app = Celery("yalgaar_example", broker=BROKER_URL, backend=BROKER_URL)
celery_app.conf.update(
    broker_transport_options={
        # Longer than the longest wait between two retries (CeleryDispatcher's
        # retry_backoff_max, 600 s), or a task waiting for its retry is delivered twice.
        "visibility_timeout": 3600,
        # A broker that vanishes costs a request a few seconds (then 503), never a hang.
        "socket_connect_timeout": 2,
        "socket_timeout": 5,
    },
    # With late acknowledgement a worker holds only the task it runs, so a worker that dies
    # takes no queued tasks down with it.
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
)

dead_letters = JsonLinesDeadLetterSink(
    os.environ.get("YALGAAR_DEAD_LETTERS", "yalgaar-dead-letters.jsonl")
)
receiver = Receiver(
    dispatcher=CeleryDispatcher(celery_app, queue="yalgaar", dead_letters=dead_letters)
)


@receiver.on_bind
def joined(event: BindEvent) -> None:
    # Runs on a worker. Delivery is at least once: write handlers so that running one twice
    # does no harm (an upsert, not an insert), or pass Receiver(dedupe=...).
    print(f"{event.uuid} joined {event.channel} at {event.timestamp}", flush=True)


@receiver.on_unbind
def left(event: UnbindEvent) -> None:
    print(f"{event.uuid} left {event.channel}", flush=True)


@receiver.on_message(channel="orders-*")
def order(event: MessageEvent) -> None:
    print(f"order on {event.channel}: {event.json()}", flush=True)


def create_app(config: t.Mapping[str, t.Any] | None = None) -> Flask:
    """The web side; ``YALGAAR_CLIENT_KEYS`` comes from the environment or ``config``."""
    app = Flask(__name__)
    app.config["YALGAAR_CLIENT_KEYS"] = os.environ.get("YALGAAR_CLIENT_KEYS")
    # The secret in the webhook URL (docs/security.md); without it the app warns at start-up.
    app.config["YALGAAR_URL_TOKENS"] = os.environ.get("YALGAAR_URL_TOKENS")
    app.config.update(config or {})
    app.register_blueprint(create_blueprint(receiver), url_prefix="/yalgaar")
    return app


if __name__ == "__main__" and sys.argv[1:] == ["replay"]:
    print(replay(dead_letters, receiver))
