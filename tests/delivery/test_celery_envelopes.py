"""``CeleryDispatcher(mode="envelope")``: one broker message per request, each event its own
outcome. Against a real Redis broker; the handlers run on a real Celery worker (solo pool, in
this process, so that the test can count the calls) consuming it.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
import threading
import time
import typing as t
import uuid

import pytest
import redis
from celery import Celery
from celery.contrib.testing.worker import start_worker

from yalgaar_receiver import ConfigurationError, MessageEvent, Receiver
from yalgaar_receiver.delivery import RedisDeadLetterSink
from yalgaar_receiver.delivery.celery import CeleryDispatcher
from yalgaar_receiver.delivery.dedupe import RedisDedupeStore
from yalgaar_receiver.testing import bind, message, message_envelope, presence_envelope

from ..servers import RedisServer

KEY = "ck-4704a1b2c3d4402f"


def celery_app(url: str) -> Celery:
    app = Celery(f"yalgaar_envelopes_{uuid.uuid4().hex[:6]}", broker=url)
    app.conf.update(broker_connection_retry_on_startup=True, worker_hijack_root_logger=False)
    return app


@dataclasses.dataclass
class Envelopes:
    """A dispatcher in ``mode="envelope"`` with quick retries, its queue, and a dead-letter
    sink on the test's Redis."""

    app: Celery
    queue: str
    store: redis.Redis
    sink: RedisDeadLetterSink
    dispatcher: CeleryDispatcher

    @contextlib.contextmanager
    def worker(self) -> t.Iterator[None]:
        """A solo worker in this process on the queue; the logging it sets up is undone."""
        root = logging.getLogger()
        level, handlers = root.level, list(root.handlers)
        try:
            with start_worker(self.app, pool="solo", perform_ping_check=False, queues=[self.queue]):
                yield
        finally:
            self.app.close()
            root.setLevel(level)
            root.handlers[:] = handlers


def envelopes(url: str, name: str, max_retries: int) -> Envelopes:
    app = celery_app(url)
    queue = f"{name}-{uuid.uuid4().hex[:6]}"
    store = redis.Redis.from_url(url)
    sink = RedisDeadLetterSink(store, key=f"dead-{queue}")
    dispatcher = CeleryDispatcher(
        app,
        queue=queue,
        mode="envelope",
        max_retries=max_retries,
        retry_backoff=0.1,
        retry_jitter=False,
        dead_letters=sink,
    )
    return Envelopes(app, queue, store, sink, dispatcher)


def binds(count: int) -> bytes:
    items = [bind("room", f"m{n}", at=1_700_000_000 + n) for n in range(count)]
    return presence_envelope(*items, client_key=KEY).to_bytes()


@pytest.mark.parametrize(("mode", "messages"), [("envelope", 1), ("event", 200)])
def test_broker_messages_per_200_item_envelope(
    redis_server: RedisServer, mode: str, messages: int
) -> None:
    # No worker: the messages stay in the queue (a Redis list named after it) to be counted.
    app = celery_app(redis_server.url)
    queue = f"count-{mode}"
    receiver = Receiver([KEY], dispatcher=CeleryDispatcher(app, queue=queue, mode=mode))
    receiver.handle(binds(200))
    with redis.Redis.from_url(redis_server.url) as broker:
        assert broker.llen(queue) == messages
    app.close()


def test_bad_mode_is_refused(redis_server: RedisServer) -> None:
    with pytest.raises(ConfigurationError, match="mode"):
        CeleryDispatcher(celery_app(redis_server.url), mode="batch")


def test_each_event_of_an_envelope_keeps_its_own_outcome(redis_server: RedisServer) -> None:
    stack = envelopes(redis_server.url, "outcomes", max_retries=2)
    receiver = Receiver([KEY], dispatcher=stack.dispatcher, dedupe=RedisDedupeStore(stack.store))
    runs: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()

    @receiver.on_message
    def handler(event: MessageEvent) -> None:
        with lock:
            runs[event.message] += 1
            tries = runs[event.message]
        if event.message == "always":
            raise RuntimeError("always fails")
        if event.message == "flaky" and tries < 3:
            raise RuntimeError(f"try {tries} failed")

    texts = ["a", "flaky", "b", "always", "c"]
    items = [message("c", f"u{n}", text, at=1_700_000_000 + n) for n, text in enumerate(texts)]
    sink = stack.sink
    with stack.worker():
        assert receiver.handle(message_envelope(*items, client_key=KEY).to_bytes()).accepted
        deadline = time.monotonic() + 30
        while not (sink.entries() and runs["flaky"] == 3) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # nothing more may run
    letters = sink.entries()
    stack.store.close()
    # Each good event ran once; the flaky one until it succeeded; the failing one three times
    # (the first try and two retries), then it alone was dead-lettered.
    assert runs == {"a": 1, "b": 1, "c": 1, "flaky": 3, "always": 3}
    [letter] = letters
    assert letter.event["message"] == "always" and letter.attempts == 3


def test_the_envelope_task_is_acknowledged_late(redis_server: RedisServer) -> None:
    dispatcher = CeleryDispatcher(celery_app(redis_server.url), mode="envelope")
    assert dispatcher.envelope_task.acks_late and dispatcher.envelope_task.reject_on_worker_lost
    assert dispatcher.envelope_task.name == "yalgaar_receiver.emit.envelope"
    assert "mode='envelope'" in repr(dispatcher)


def test_an_error_around_the_handlers_retries_then_buries_every_event(
    redis_server: RedisServer,
) -> None:
    stack = envelopes(redis_server.url, "around", max_retries=1)
    keys: list[str] = []

    def broken_key(event: MessageEvent) -> str:
        keys.append(event.message)
        raise ZeroDivisionError("the key function is broken")

    receiver = Receiver(
        [KEY],
        dispatcher=stack.dispatcher,
        dedupe=RedisDedupeStore(stack.store, prefix=f"{stack.queue}:"),
        dedupe_key=broken_key,  # type: ignore[arg-type]
    )
    ran: list[str] = []
    receiver.on_message(lambda event: ran.append(event.message))
    items = [message("c", f"u{n}", f"m{n}", at=1_700_000_000 + n) for n in range(2)]
    with stack.worker():
        receiver.handle(message_envelope(*items, client_key=KEY).to_bytes())
        deadline = time.monotonic() + 30
        while len(stack.sink.entries()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    letters = stack.sink.entries()
    stack.store.close()
    assert ran == []  # nothing ran without its claim
    assert sorted(letter.event["message"] for letter in letters) == ["m0", "m1"]
    assert all("ZeroDivisionError" in letter.error and letter.attempts == 2 for letter in letters)
    assert keys == ["m0", "m0"]  # one try of the batch each time: the first key raised
