"""The Celery application the tests run in a real worker process (and build in the test process).

The worker imports this module (``celery -A tests.celery_worker:celery_app worker``) with the
test's Redis in ``YALGAAR_TEST_REDIS_URL``. Handlers write what they do to that Redis, so the
test process can see what happened in the worker.
"""

from __future__ import annotations

import json
import os
import time
import typing as t
from dataclasses import dataclass

import redis
from celery import Celery
from flask import Flask
from marshmallow import Schema, fields, post_load

from yalgaar_receiver import Event, MessageEvent, Receiver, create_blueprint
from yalgaar_receiver.delivery import RedisDeadLetterSink
from yalgaar_receiver.delivery.celery import CeleryDispatcher

from .payloads import KEY

URL_VARIABLE = "YALGAAR_TEST_REDIS_URL"
QUEUE = "yalgaar-test"
HANDLED = "test:handled"
STARTED = "test:started"
RELEASE = "test:release"
DEAD_LETTERS = "test:dead-letters"
LOADED = "test:loaded"
#: Messages are decrypted with this key; a plain one is delivered as it came.
MESSAGE_KEY = "celery-test-key!"

#: Transport options that make redelivery happen in seconds, not in an hour: a message not
#: acknowledged 3 s after delivery is given to another worker, checked every second.
TRANSPORT_OPTIONS: t.Final = {
    "visibility_timeout": 3,
    "unacked_restore_interval": 1,
    "unacked_restore_throttle": 1,
    "socket_connect_timeout": 2,
    "socket_timeout": 5,
}


@dataclass
class Stack:
    """The pieces one test needs: the Celery app, the receiver, its Flask app, a Redis client."""

    celery_app: Celery
    receiver: Receiver
    dispatcher: CeleryDispatcher
    flask_app: Flask
    store: redis.Redis


def build(url: str) -> Stack:
    celery_app = Celery("yalgaar_tests", broker=url, backend=url)
    celery_app.conf.update(
        broker_transport_options=dict(TRANSPORT_OPTIONS),
        broker_connection_retry_on_startup=True,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
    )
    store = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
    dispatcher = CeleryDispatcher(
        celery_app,
        queue=QUEUE,
        max_retries=2,
        retry_backoff=0.2,
        retry_jitter=False,
        retry_after=2,
        dead_letters=RedisDeadLetterSink(store, key=DEAD_LETTERS),
    )
    receiver = Receiver(
        client_keys=[KEY],
        dispatcher=dispatcher,
        message_keys=[MESSAGE_KEY],
        undecryptable="deliver",
    )

    class Order(Schema):
        id = fields.Int(required=True)

        @post_load
        def noted(self, data: dict[str, t.Any], **kwargs: t.Any) -> dict[str, t.Any]:
            # Where each load ran: the web process checks the request, the worker loads its own.
            store.rpush(LOADED, json.dumps({"id": data["id"], "pid": os.getpid()}))
            return data

    def note(event: Event, **more: t.Any) -> None:
        entry = {"uuid": event.uuid, "type": event.event_type, "pid": os.getpid(), **more}
        store.rpush(HANDLED, json.dumps(entry))

    @receiver.on_bind
    def joined(event: Event) -> None:
        note(event)

    @receiver.on_message(channel="orders")
    def ordered(event: MessageEvent) -> None:
        note(
            event,
            message=event.message,
            encrypted=event.encrypted,
            ts=None if event.timestamp is None else str(event.timestamp),
        )

    @receiver.on_message(channel="typed", payload=Order())
    def typed(event: MessageEvent) -> None:
        note(event, payload=dict(event.payload))

    @receiver.on_message(channel="flaky")
    def flaky(event: MessageEvent) -> None:
        # Fails until its try number reaches the number in the message.
        tries = int(store.rpush(f"test:tries:{event.uuid}", time.time()))
        if tries < int(event.message):
            raise RuntimeError(f"try {tries} failed")
        note(event, tries=tries)

    @receiver.on_message(channel="slow")
    def slow(event: MessageEvent) -> None:
        store.rpush(STARTED, json.dumps({"uuid": event.uuid, "pid": os.getpid()}))
        deadline = time.monotonic() + 60  # a stray worker never waits forever
        while not store.get(RELEASE) and time.monotonic() < deadline:
            time.sleep(0.05)
        note(event)

    flask_app = Flask(__name__)
    flask_app.config["YALGAAR_ALLOW_CLIENT_KEY_ONLY"] = True  # see test_auth.py
    flask_app.register_blueprint(create_blueprint(receiver), url_prefix="/yalgaar")
    return Stack(celery_app, receiver, dispatcher, flask_app, store)


# The worker's app; in the test process nothing connects to this placeholder address.
celery_app = build(os.environ.get(URL_VARIABLE, "redis://127.0.0.1:9/0")).celery_app
