"""examples/celery_app.py runs: imported, posted to, and its worker command handles the events."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
import typing as t
from pathlib import Path
from types import ModuleType

import pytest

from ..payloads import KEY, payload
from ..servers import RedisServer

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "celery_app.py"


@pytest.fixture
def example(
    redis_server: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> t.Iterator[ModuleType]:
    monkeypatch.setenv("YALGAAR_BROKER_URL", redis_server.url)
    monkeypatch.setenv("YALGAAR_DEAD_LETTERS", str(tmp_path / "dead.jsonl"))
    spec = importlib.util.spec_from_file_location("example_celery_app", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    try:
        yield module
    finally:
        module.celery_app.close()


def test_the_docstring_has_the_commands(example: ModuleType) -> None:
    doc = example.__doc__ or ""
    assert "celery -A examples.celery_app:celery_app worker -Q yalgaar" in doc
    assert "gunicorn --workers 2 --bind 127.0.0.1:8000 'examples.celery_app:create_app()'" in doc


def test_the_example_worker_handles_what_the_web_side_accepted(
    example: ModuleType, redis_server: RedisServer, tmp_path: Path
) -> None:
    app = example.create_app({"YALGAAR_CLIENT_KEYS": KEY, "YALGAAR_URL_TOKENS": "t0ken"})
    client = app.test_client()
    response = client.post("/yalgaar/t0ken/presence", data=payload("presence-bind.json"))
    assert response.status_code == 200 and response.json["accepted"] == 1
    assert client.post("/yalgaar/t0ken/", data=payload("client-key-wrong.json")).status_code == 403

    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        # The command of the example's docstring, with the solo pool to start faster.
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "examples.celery_app:celery_app", "worker",
             "-Q", "yalgaar", "--pool", "solo", "--without-gossip", "--without-mingle",
             "--without-heartbeat", "--loglevel", "INFO"],
            cwd=ROOT,
            env={**os.environ, "YALGAAR_BROKER_URL": redis_server.url},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while "User-1a2b3c4d joined lobby at 2018-03-21 05:20:00+00:00" not in log.read_text():
            assert worker.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(10)


def test_the_replay_command_runs_the_dead_letters(tmp_path: Path) -> None:
    from yalgaar_receiver import parse_envelope
    from yalgaar_receiver.delivery import DeadLetter, JsonLinesDeadLetterSink

    path = tmp_path / "dead.jsonl"
    sink = JsonLinesDeadLetterSink(path)
    event = parse_envelope(payload("presence-bind.json")).events[0]
    sink.put(DeadLetter.from_error(event, "database down", handler="examples.celery_app.joined"))
    finished = subprocess.run(
        [sys.executable, "-m", "examples.celery_app", "replay"],
        cwd=ROOT,
        env={**os.environ, "YALGAAR_DEAD_LETTERS": str(path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert finished.stdout.splitlines() == [
        "User-1a2b3c4d joined lobby at 2018-03-21 05:20:00+00:00",
        "1 event(s) succeeded, 0 handler call(s) failed again, 0 entr(y/ies) skipped",
    ]
    assert sink.entries() == []


def test_importing_the_package_imports_no_optional_dependency() -> None:
    code = (
        "import sys, yalgaar_receiver, yalgaar_receiver.dispatch, yalgaar_receiver.dead_letters,"
        " yalgaar_receiver.serialization\n"
        "print(sorted(m for m in ('celery', 'kombu', 'redis', 'billiard') if m in sys.modules))"
    )
    finished = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert finished.stdout.strip() == "[]"
