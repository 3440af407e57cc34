"""CeleryDispatcher with real components: a redis-server, and celery worker processes.

The web side runs in the test process (the Flask test client); the handlers run in a worker
subprocess started with ``celery -A tests.celery_worker:celery_app worker`` and write what they
did to Redis, where the test reads it. One worker serves the whole module; the tests that kill
workers start their own.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import typing as t
from dataclasses import dataclass
from pathlib import Path

import pytest

from yalgaar_receiver import BindEvent, MessageEvent, Receiver
from yalgaar_receiver.delivery.celery import CeleryDispatcher
from yalgaar_receiver.delivery.serialization import event_to_dict
from yalgaar_receiver.encryption import MessageKeys
from yalgaar_receiver.exceptions import ConfigurationError

from .. import celery_worker
from ..celery_worker import (
    DEAD_LETTERS,
    HANDLED,
    LOADED,
    MESSAGE_KEY,
    QUEUE,
    RELEASE,
    STARTED,
    Stack,
    build,
)
from ..payloads import KEY
from ..servers import RedisServer, start_redis

ROOT = Path(__file__).resolve().parents[2]
WAIT = 30.0  # upper bound of every wait; only reached when something is broken


def wait_for(
    condition: t.Callable[[], bool], what: str, *workers: Worker, timeout: float = WAIT
) -> None:
    """Poll ``condition`` until it holds; fail with the workers' logs when it never does."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {w.log.name}\n{w.output()[-4000:]}" for w in workers)
            pytest.fail(f"timed out after {timeout} s waiting for {what}\n{logs}")
        time.sleep(0.05)


@dataclass
class Worker:
    """A ``celery worker`` process in its own session, so that a kill reaches its children."""

    process: subprocess.Popen[bytes]
    log: Path

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                pass
        self.kill()

    def output(self) -> str:
        return self.log.read_text("utf-8", "replace")


def start_worker(url: str, directory: Path, name: str, pool: str = "solo") -> Worker:
    """Start a worker and wait (bounded) until it consumes; kill it if it never does."""
    log = directory / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "tests.celery_worker:celery_app", "worker",
             "--pool", pool, "--concurrency", "1", "-Q", QUEUE, "--hostname", f"{name}@%h",
             "--without-gossip", "--without-mingle", "--without-heartbeat",
             "--loglevel", "INFO"],
            cwd=ROOT,
            env={**os.environ, celery_worker.URL_VARIABLE: url},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    worker = Worker(process, log)
    deadline = time.monotonic() + WAIT
    while " ready." not in worker.output():
        if process.poll() is not None or time.monotonic() > deadline:
            worker.kill()
            pytest.fail(f"the celery worker did not start:\n{worker.output()[-3000:]}")
        time.sleep(0.05)
    return worker


@pytest.fixture(scope="module")
def broker() -> t.Iterator[RedisServer]:
    """One redis-server for the module: broker, result backend and the handlers' notebook."""
    yield from start_redis()


@pytest.fixture(scope="module")
def worker(broker: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> t.Iterator[Worker]:
    """One solo worker shared by the module's tests; killed at the end whatever happened."""
    started = start_worker(broker.url, tmp_path_factory.mktemp("worker"), "shared")
    try:
        yield started
    finally:
        started.stop()


def open_stack(url: str) -> t.Iterator[Stack]:
    stack = build(url)
    try:
        yield stack
    finally:
        stack.celery_app.close()
        stack.store.close()


@pytest.fixture
def web(broker: RedisServer) -> t.Iterator[Stack]:
    """The web side: Flask app, receiver and Celery app of the test process."""
    yield from open_stack(broker.url)


@pytest.fixture
def own_web(redis_server: RedisServer) -> t.Iterator[Stack]:
    """A web side on a Redis of the test's own, for tests that start and kill their workers."""
    yield from open_stack(redis_server.url)


def envelope(source: str, *items: dict[str, t.Any]) -> bytes:
    return json.dumps({"items": {"source": source, "clientKey": KEY, "data": list(items)}}).encode()


def handled(stack: Stack) -> list[dict[str, t.Any]]:
    return [json.loads(entry) for entry in stack.store.lrange(HANDLED, 0, -1)]


def handled_uuids(stack: Stack) -> list[str]:
    return [entry["uuid"] for entry in handled(stack)]


# -- a shared worker ----------------------------------------------------------------------------


def test_decorated_handlers_run_on_the_worker(worker: Worker, web: Stack) -> None:
    body = envelope(
        "Message",
        {"channel": "orders", "uuid": "m1", "timestamp": "1521609600.25", "message": '{"n":1}'},
        {"channel": "orders", "uuid": "m2", "message": "two", "note": "kept"},
    )
    response = web.flask_app.test_client().post("/yalgaar/message", data=body)
    assert response.status_code == 200
    assert response.json == {"accepted": 2, "rejected": [], "failed": 0}
    presence = envelope("Presence", {"channel": "lobby", "uuid": "b1", "action": "bind"})
    assert web.flask_app.test_client().post("/yalgaar/", data=presence).status_code == 200

    wait_for(lambda: {"m1", "m2", "b1"} <= set(handled_uuids(web)), "the worker's handlers")
    entries = {entry["uuid"]: entry for entry in handled(web)}
    assert {entries[u]["pid"] for u in ("m1", "m2", "b1")} == {worker.process.pid}
    assert entries["b1"]["type"] == "bind"
    assert entries["m1"]["message"] == '{"n":1}'
    assert entries["m1"]["ts"] == "2018-03-21 05:20:00.250000+00:00"  # exact, microseconds kept


def test_payloads_are_checked_in_the_request_and_loaded_on_the_worker(
    worker: Worker, web: Stack
) -> None:
    good = {"channel": "typed", "uuid": "p1", "timestamp": "1521609600", "message": '{"id": 1}'}
    bad = {"channel": "typed", "uuid": "p2", "timestamp": "1521609600", "message": '{"id": "x"}'}
    response = web.flask_app.test_client().post(
        "/yalgaar/message", data=envelope("Message", good, bad)
    )
    assert response.status_code == 200
    assert response.json is not None
    [refused] = response.json["rejected"]
    assert refused["index"] == 1
    assert refused["handlers"] == ["tests.celery_worker.build.<locals>.typed"]
    assert refused["errors"] == {"message": {"id": ["Not a valid integer."]}}
    wait_for(lambda: "p1" in handled_uuids(web), "the typed handler on the worker")
    [entry] = [e for e in handled(web) if e["uuid"] in ("p1", "p2")]
    assert entry["payload"] == {"id": 1} and entry["pid"] == worker.process.pid
    loads = [json.loads(x) for x in web.store.lrange(LOADED, 0, -1)]
    # Once in the request (this process), once on the worker: the task carried the text.
    assert sorted(load["pid"] for load in loads) == sorted([os.getpid(), worker.process.pid])


def test_an_encrypted_message_crosses_to_the_worker_decrypted(worker: Worker, web: Stack) -> None:
    sealed = MessageKeys([MESSAGE_KEY]).encrypt("for the worker")
    item = {"channel": "orders", "uuid": "e1", "timestamp": "1521609600", "message": sealed}
    response = web.flask_app.test_client().post("/yalgaar/message", data=envelope("Message", item))
    assert response.status_code == 200
    wait_for(lambda: "e1" in handled_uuids(web), "the worker's handler")
    [entry] = [e for e in handled(web) if e["uuid"] == "e1"]
    assert (entry["message"], entry["encrypted"]) == ("for the worker", True)


def test_a_failing_handler_is_retried_with_backoff_then_dead_lettered(
    worker: Worker, web: Stack
) -> None:
    body = envelope(
        "Message",
        {"channel": "flaky", "uuid": "f-ok", "message": "3"},  # succeeds on the third try
        {"channel": "flaky", "uuid": "f-never", "message": "99"},
    )
    assert web.flask_app.test_client().post("/yalgaar/", data=body).status_code == 200
    wait_for(lambda: "f-ok" in handled_uuids(web), "the third try of f-ok")
    wait_for(lambda: web.store.llen(DEAD_LETTERS) >= 1, "the dead letter of f-never")

    tries = [float(x) for x in web.store.lrange("test:tries:f-ok", 0, -1)]
    assert len(tries) == 3
    # Backoff 0.2 s, then 0.4 s (jitter off); a little slack for clock reading.
    assert tries[1] - tries[0] >= 0.15 and tries[2] - tries[1] >= 0.35
    assert web.store.llen("test:tries:f-never") == 3  # first run + max_retries=2
    (letter,) = web.dispatcher.dead_letters.entries()
    assert letter.attempts == 3
    assert letter.error == "RuntimeError: try 3 failed"
    assert letter.handler is not None and letter.handler.endswith("build.<locals>.flaky")
    assert letter.raw == {"channel": "flaky", "uuid": "f-never", "message": "99"}
    event = letter.load_event()
    assert isinstance(event, MessageEvent) and event.uuid == "f-never"
    assert "f-never" not in handled_uuids(web)


def test_redis_down_answers_503_and_resends_succeed_after_it_returns(
    worker: Worker, web: Stack, broker: RedisServer
) -> None:
    client = web.flask_app.test_client()
    # Stop Redis while the worker is idle: kombu's Redis transport cannot restore a message that
    # is unacknowledged when the connection drops, and the worker stops (docs/delivery.md).
    wait_for(lambda: web.store.hlen("unacked") == 0, "the worker to acknowledge", worker)
    broker.stop()
    try:
        for number in range(5):
            item = {"channel": "orders", "uuid": f"o{number}", "message": "m"}
            started = time.monotonic()
            response = client.post("/yalgaar/", data=envelope("Message", item))
            assert response.status_code == 503, response.json
            assert response.headers["Retry-After"] == "2"
            assert "cannot be reached" in response.json["detail"]  # type: ignore[index]
            # Bounded: the request does not hang on the missing broker.
            assert time.monotonic() - started < WAIT
    finally:
        broker.start()
    # The sender resends after Retry-After; the first tries may still meet a stale connection.
    for number in range(5):
        item = {"channel": "orders", "uuid": f"o{number}", "message": "m"}
        deadline = time.monotonic() + WAIT
        while client.post("/yalgaar/", data=envelope("Message", item)).status_code != 200:
            assert time.monotonic() < deadline, "the resend never succeeded"
            time.sleep(0.2)
    wait_for(
        lambda: {f"o{n}" for n in range(5)} <= set(handled_uuids(web)),
        "the resent events on the reconnected worker",
        worker,
    )
    assert sorted(handled_uuids(web)) == [f"o{n}" for n in range(5)]  # once each, none earlier


# -- workers that die ---------------------------------------------------------------------------


def test_a_worker_killed_mid_handler_loses_no_event(
    redis_server: RedisServer, own_web: Stack, tmp_path: Path
) -> None:
    store = own_web.store
    first = start_worker(redis_server.url, tmp_path, "first")
    second: Worker | None = None
    try:
        body = envelope("Message", {"channel": "slow", "uuid": "k1", "message": "m"})
        assert own_web.flask_app.test_client().post("/yalgaar/", data=body).status_code == 200
        wait_for(lambda: store.llen(STARTED) == 1, "the handler to start", first)
        first.kill()  # SIGKILL, mid-handler: the task was never acknowledged
        assert handled_uuids(own_web) == []
        store.set(RELEASE, 1)
        second = start_worker(redis_server.url, tmp_path, "second")
        # Redelivered once the visibility timeout (3 s in this test) has passed.
        wait_for(lambda: handled_uuids(own_web) == ["k1"], "the redelivered event", second)
        starts = [json.loads(s) for s in store.lrange(STARTED, 0, -1)]
        assert [s["uuid"] for s in starts] == ["k1", "k1"]
        assert starts[0]["pid"] != starts[1]["pid"]
    finally:
        first.kill()
        if second is not None:
            second.stop()


def test_a_pool_process_killed_mid_handler_is_requeued(
    redis_server: RedisServer, own_web: Stack, tmp_path: Path
) -> None:
    store = own_web.store
    worker = start_worker(redis_server.url, tmp_path, "prefork", pool="prefork")
    try:
        body = envelope("Message", {"channel": "slow", "uuid": "p1", "message": "m"})
        assert own_web.flask_app.test_client().post("/yalgaar/", data=body).status_code == 200
        wait_for(lambda: store.llen(STARTED) == 1, "the handler to start", worker)
        child = json.loads(store.lindex(STARTED, 0) or "{}")["pid"]
        assert child != worker.process.pid
        store.set(RELEASE, 1)
        os.kill(child, signal.SIGKILL)  # the pool process dies; its parent rejects the task
        wait_for(lambda: handled_uuids(own_web) == ["p1"], "the requeued event", worker)
        assert "WorkerLostError" in worker.output()
    finally:
        worker.stop()


# -- without a worker ---------------------------------------------------------------------------


def test_the_task_is_registered_with_late_acks(web: Stack) -> None:
    task = web.dispatcher.task
    assert task.name in web.celery_app.tasks
    assert task.acks_late is True
    assert task.reject_on_worker_lost is True
    assert task.max_retries == 2
    assert web.celery_app.conf.broker_transport_options["socket_timeout"] == 5


def test_backoff_doubles_up_to_the_maximum(web: Stack) -> None:
    dispatcher = CeleryDispatcher(
        web.celery_app, task_name="t.backoff", retry_backoff=1, retry_backoff_max=5
    )
    dispatcher.retry_jitter = False
    assert [dispatcher.backoff(n) for n in range(5)] == [1, 2, 4, 5, 5]
    dispatcher.retry_jitter = True
    assert all(0 <= dispatcher.backoff(3) <= 5 for _ in range(20))


def test_one_dispatcher_serves_one_receiver(web: Stack) -> None:
    with pytest.raises(ConfigurationError, match="already serves another Receiver"):
        Receiver(allow_unauthenticated=True, dispatcher=web.dispatcher)
    web.dispatcher.attach(web.receiver)  # the same one again is fine


@pytest.mark.parametrize("kwargs", [{"max_retries": -1}, {"retry_backoff": 0}, {"retry_after": -1}])
def test_bad_settings_are_refused(web: Stack, kwargs: dict[str, t.Any]) -> None:
    with pytest.raises(ConfigurationError):
        CeleryDispatcher(web.celery_app, task_name="t.bad", **kwargs)


def test_the_task_refuses_to_run_without_a_receiver(web: Stack) -> None:
    lonely = CeleryDispatcher(web.celery_app, task_name="t.lonely")
    form = event_to_dict(BindEvent(channel="c", uuid=None, timestamp=None))
    with pytest.raises(ConfigurationError, match="has no Receiver in this worker"):
        lonely.task.apply(args=(form,), throw=True)


def test_a_broker_that_stops_answering_costs_seconds_not_a_hang(
    redis_server: RedisServer,
) -> None:
    from celery import Celery
    from flask import Flask

    from yalgaar_receiver import create_blueprint

    celery_app = Celery("yalgaar_hang", broker=redis_server.url)  # no timeouts of its own
    dispatcher = CeleryDispatcher(celery_app, task_name="t.hang", publish_timeout=0.5)
    assert celery_app.conf.broker_transport_options == {
        "socket_connect_timeout": 0.5,
        "socket_timeout": 0.5,
    }
    receiver = Receiver(client_keys=[KEY], dispatcher=dispatcher)
    app = Flask(__name__)
    app.config["YALGAAR_ALLOW_CLIENT_KEY_ONLY"] = True  # see test_auth.py
    app.register_blueprint(create_blueprint(receiver), url_prefix="/yalgaar")
    client = app.test_client()
    item = {"channel": "orders", "uuid": "h1", "message": "m"}
    assert redis_server.process is not None
    try:
        assert client.post("/yalgaar/", data=envelope("Message", item)).status_code == 200
        # The process is alive and its port accepts connections, but nothing answers.
        redis_server.process.send_signal(signal.SIGSTOP)
        started = time.monotonic()
        response = client.post("/yalgaar/", data=envelope("Message", item))
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "5"
        assert time.monotonic() - started < WAIT
    finally:
        redis_server.process.send_signal(signal.SIGCONT)
        celery_app.close()
