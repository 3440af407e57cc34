"""De-duplication across processes and apps through a real ``redis-server``."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
import typing as t
import uuid
from pathlib import Path

import pytest
import redis
from flask import Flask

from yalgaar_receiver import DispatchUnavailableError, Event, Receiver, create_blueprint
from yalgaar_receiver.delivery.dedupe import RedisDedupeStore

from ..servers import RedisServer
from .test_dedupe_stores import connect

PAYLOADS = Path(__file__).parents[1] / "payloads"
KEY = "ck-4704a1b2c3d4402f"


def payload(name: str) -> bytes:
    return (PAYLOADS / name).read_bytes()


@pytest.fixture
def client(redis_server: RedisServer) -> t.Iterator[redis.Redis]:
    connection = connect(redis_server)
    try:
        yield connection
    finally:
        connection.close()


class Runs:
    """Counts handler runs per (handler, event) over every app of a test; thread-safe."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, Event], int] = {}
        self._lock = threading.Lock()

    def add(self, name: str, event: Event) -> None:
        with self._lock:
            self.counts[name, event] = self.counts.get((name, event), 0) + 1


def make_app(store: RedisDedupeStore, runs: Runs, *, pause: float = 0.0) -> Flask:
    """One Flask app instance, as one of several gunicorn workers or machines would run."""
    receiver = Receiver(client_keys=[KEY], dedupe=store)

    @receiver.on_presence
    def presence(event: Event) -> None:
        runs.add("presence", event)
        time.sleep(pause)  # a database write: long enough for deliveries to overlap

    @receiver.on_bind
    def bind(event: Event) -> None:
        runs.add("bind", event)

    @receiver.on_message
    def message(event: Event) -> None:
        runs.add("message", event)
        time.sleep(pause)

    app = Flask(f"app-{uuid.uuid4().hex}")

    app.config["YALGAAR_ALLOW_CLIENT_KEY_ONLY"] = True  # see test_auth.py
    app.register_blueprint(create_blueprint(receiver), url_prefix="/yalgaar")
    return app


def expected_runs(body: bytes) -> dict[tuple[str, Event], int]:
    """Every handler that matches, once per event of the body."""
    receiver = Receiver(client_keys=[KEY])
    seen = Runs()
    receiver.on_presence(lambda event: seen.add("presence", event))
    receiver.on_bind(lambda event: seen.add("bind", event))
    receiver.on_message(lambda event: seen.add("message", event))
    receiver.handle(body)
    return seen.counts


def test_two_apps_sharing_one_redis_run_every_handler_once_per_event(
    redis_server: RedisServer,
) -> None:
    body = payload("dedupe_batch.json")
    runs = Runs()
    prefix = f"test:{uuid.uuid4().hex}:"
    clients = [connect(redis_server) for _ in range(2)]
    apps = [make_app(RedisDedupeStore(c, prefix=prefix), runs, pause=0.02) for c in clients]
    posters_per_app = 3
    barrier = threading.Barrier(2 * posters_per_app, timeout=10)
    answers: list[tuple[int, dict[str, t.Any]]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def post(app: Flask) -> None:
        # The sender: posts, and posts again after each 503, as a retrying sender would.
        try:
            http = app.test_client()
            barrier.wait()
            for _ in range(200):
                response = http.post("/yalgaar/", data=body)
                with lock:
                    answers.append((response.status_code, response.get_json()))
                if response.status_code == 200:
                    return
                assert response.status_code == 503
                assert response.headers["Retry-After"] == "1"
                time.sleep(0.02)
            raise AssertionError("never answered 200")
        except BaseException as error:
            errors.append(error)

    threads = [
        threading.Thread(target=post, args=(app,)) for app in apps for _ in range(posters_per_app)
    ]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not any(thread.is_alive() for thread in threads)
    finally:
        for connection in clients:
            connection.close()
    assert errors == []
    assert runs.counts == expected_runs(body)
    final = [summary for status, summary in answers if status == 200]
    assert len(final) == 2 * posters_per_app
    # Five events, six deliveries: every event ran in exactly one of them.
    assert sum(s["accepted"] - s["duplicates"] for s in final) <= 5
    assert all(s["failed"] == 0 for s in final)


def test_a_resend_to_another_app_after_success_is_a_duplicate(redis_server: RedisServer) -> None:
    runs = Runs()
    clients = [connect(redis_server) for _ in range(2)]
    try:
        first, second = (make_app(RedisDedupeStore(c), runs).test_client() for c in clients)
        body = payload("dedupe_batch.json")
        assert first.post("/yalgaar/", data=body).get_json()["duplicates"] == 0
        assert second.post("/yalgaar/", data=body).get_json()["duplicates"] == 5
    finally:
        for connection in clients:
            connection.close()
    assert runs.counts == expected_runs(body)


def test_a_resend_after_a_failure_runs_again_on_another_app(client: redis.Redis) -> None:
    body = payload("dedupe_repeated_item.json")
    failing = Receiver(client_keys=[KEY], dedupe=RedisDedupeStore(client))

    @failing.on_bind
    def broken(event: Event) -> None:
        raise RuntimeError("database down")

    runs = Runs()
    healthy = make_app(RedisDedupeStore(client), runs).test_client()
    outcome = failing.handle(body)
    # The three copies of the item each claimed, failed and released the key.
    assert len(outcome.failed) == 3
    assert outcome.duplicates == ()
    summary = healthy.post("/yalgaar/", data=body).get_json()
    assert summary == {"accepted": 3, "rejected": [], "failed": 0, "duplicates": 2}
    assert sorted(runs.counts.values()) == [1, 1]


_CRASHING_WORKER = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    import redis
    from yalgaar_receiver import Receiver
    from yalgaar_receiver.delivery.dedupe import RedisDedupeStore

    url, body, lease = sys.argv[1], Path(sys.argv[2]).read_bytes(), float(sys.argv[3])
    receiver = Receiver(
        client_keys=["ck-4704a1b2c3d4402f"],
        dedupe=RedisDedupeStore(redis.Redis.from_url(url), lease=lease),
    )

    @receiver.on_bind
    def crash(event):
        print("claimed", flush=True)
        os._exit(3)  # the process dies mid-handler: no release, no done

    receiver.handle(body)
    """
)


def test_a_claim_of_a_crashed_process_is_retried_after_the_lease(
    redis_server: RedisServer, client: redis.Redis
) -> None:
    lease = 3.0
    path = PAYLOADS / "dedupe_repeated_item.json"
    started = time.monotonic()
    crashed = subprocess.run(
        [sys.executable, "-c", _CRASHING_WORKER, redis_server.url, str(path), str(lease)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert crashed.returncode == 3, crashed.stderr
    assert crashed.stdout == "claimed\n"
    runs = Runs()
    receiver = Receiver(client_keys=[KEY], dedupe=RedisDedupeStore(client))
    receiver.on_bind(lambda event: runs.add("bind", event))
    refused = 0
    deadline = time.monotonic() + 30
    while True:
        attempted = time.monotonic()
        try:
            outcome = receiver.handle(path.read_bytes())
            break
        except DispatchUnavailableError as error:
            assert error.retry_after == 1.0
            refused += 1
        assert attempted < deadline, "the crashed claim never expired"
        time.sleep(0.1)
    # The crashed process claimed the key after `started`, for `lease` seconds: no delivery may
    # run it before then (0.1 s for the two clocks). Every earlier attempt was refused.
    assert attempted >= started + lease - 0.1, (attempted - started, refused)
    assert len(outcome.duplicates) == 2
    assert list(runs.counts.values()) == [1]


def test_redis_down_answers_503_and_the_resend_succeeds(redis_server: RedisServer) -> None:
    runs = Runs()
    connection = connect(redis_server)
    try:
        http = make_app(RedisDedupeStore(connection), runs).test_client()
        body = payload("dedupe_batch.json")
        redis_server.stop()
        down = http.post("/yalgaar/", data=body)
        assert down.status_code == 503
        assert down.headers["Retry-After"] == "5"
        assert "ConnectionError" in down.get_json()["detail"]
        assert runs.counts == {}
        redis_server.start()
        up = http.post("/yalgaar/", data=body)
        assert up.status_code == 200
        assert up.get_json()["duplicates"] == 0
        again = http.post("/yalgaar/", data=body)
        assert again.get_json()["duplicates"] == 5
    finally:
        connection.close()
    assert runs.counts == expected_runs(body)


def test_redis_lost_in_the_middle_of_a_batch_loses_nothing(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    # The batch's keys are claimed together before the first event runs; then Redis goes away.
    # Every event still runs, once, under its claim: the answer is 200, and the failed
    # settlement is logged. The restarted server lost the claims (no persistence in this test),
    # so a resend runs everything again: at least once, never lost.
    runs = Runs()
    connection = connect(redis_server)
    try:
        receiver = Receiver(client_keys=[KEY], dedupe=RedisDedupeStore(connection))
        receiver.on_presence(lambda event: runs.add("presence", event))
        receiver.on_message(lambda event: runs.add("message", event))
        stopped: list[Event] = []

        @receiver.on_presence
        def stop_redis(event: Event) -> None:
            if not stopped:
                stopped.append(event)
                redis_server.stop()

        app = Flask(__name__)

        app.config["YALGAAR_ALLOW_CLIENT_KEY_ONLY"] = True  # see test_auth.py
        app.register_blueprint(create_blueprint(receiver), url_prefix="/yalgaar")
        http = app.test_client()
        body = payload("dedupe_batch.json")
        first = http.post("/yalgaar/", data=body)
        assert first.status_code == 200
        assert sorted(runs.counts.values()) == [1] * 5
        assert "failed to settle the claims on 5 event(s)" in caplog.text
        # Down before the request: refused, and nothing runs.
        with pytest.raises(DispatchUnavailableError):
            receiver.handle(body)
        assert sorted(runs.counts.values()) == [1] * 5
        redis_server.start()
        second = http.post("/yalgaar/", data=body)
        assert second.status_code == 200
    finally:
        connection.close()
    assert sorted(runs.counts.values()) == [2] * 5
