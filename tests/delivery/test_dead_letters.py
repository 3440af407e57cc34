"""Dead-letter sinks (a JSON-lines file, a real Redis list) and replaying their entries."""

from __future__ import annotations

import json
import multiprocessing
import typing as t
from pathlib import Path

import pytest
import redis

from yalgaar_receiver import Event, MessageEvent, Receiver, parse_envelope, signals
from yalgaar_receiver.delivery import (
    DeadLetter,
    DeadLetterSink,
    JsonLinesDeadLetterSink,
    RedisDeadLetterSink,
    replay,
)
from yalgaar_receiver.delivery.serialization import event_to_dict

from ..payloads import payload
from ..servers import RedisServer


@pytest.fixture(params=["file", "redis"])
def sink(request: pytest.FixtureRequest, tmp_path: Path) -> t.Iterator[DeadLetterSink]:
    if request.param == "file":
        yield JsonLinesDeadLetterSink(tmp_path / "dead.jsonl")
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    client = redis.Redis.from_url(server.url)
    try:
        yield RedisDeadLetterSink(client, key="test:dead")
    finally:
        client.close()


def message_events() -> tuple[Event, ...]:
    events = parse_envelope(payload("message-values.json")).events
    assert len(events) >= 2
    return events


def failing(error: Exception) -> t.Callable[[Event], None]:
    def handler(event: Event) -> None:
        raise error

    return handler


def test_an_entry_holds_the_raw_item_error_handler_and_time(sink: DeadLetterSink) -> None:
    receiver = Receiver(allow_unauthenticated=True)
    receiver.on_message(failing(RuntimeError("database down")))
    event = message_events()[0]
    (failure,) = receiver.emit(event)
    sink.put(DeadLetter.from_failure(failure))
    (letter,) = sink.entries()
    assert letter.raw == event.raw
    assert letter.error == "RuntimeError: database down"
    assert letter.handler is not None and letter.handler.endswith("failing.<locals>.handler")
    assert "database down" in letter.traceback
    assert letter.time.tzinfo is not None and letter.attempts == 1
    assert letter.load_event() == event
    assert len(sink) == 1


def test_the_file_is_json_lines(tmp_path: Path) -> None:
    sink = JsonLinesDeadLetterSink(tmp_path / "dead.jsonl")
    for event in message_events():
        sink.put(DeadLetter.from_error(event, ValueError("bad")))
    lines = (tmp_path / "dead.jsonl").read_text("utf-8").splitlines()
    assert len(lines) == len(message_events())
    entry = json.loads(lines[0])
    assert entry["v"] == 1 and entry["error"] == "ValueError: bad" and entry["handler"] is None
    assert entry["event"] == event_to_dict(message_events()[0])


def test_replay_runs_again_and_keeps_what_fails_again(sink: DeadLetterSink) -> None:
    receiver = Receiver(allow_unauthenticated=True)
    healthy = {"value": False}
    seen: list[Event] = []

    @receiver.on_message
    def store(event: Event) -> None:
        if not healthy["value"]:
            raise ConnectionError("database down")
        seen.append(event)

    first, second = message_events()[:2]
    for event in (first, second):
        for failure in receiver.emit(event):
            sink.put(DeadLetter.from_failure(failure))
    assert len(sink) == 2

    again = replay(sink, receiver)
    assert not again.succeeded and len(again.failed) == 2 and not again.skipped
    assert [letter.attempts for letter in sink.entries()] == [2, 2]

    healthy["value"] = True
    report = replay(sink, receiver)
    assert report.succeeded == (first, second)
    assert not report.failed
    assert seen == [first, second]
    assert sink.entries() == []
    assert "2 event(s) succeeded" in str(report)


def test_replay_runs_an_event_once_when_several_handlers_failed(sink: DeadLetterSink) -> None:
    receiver = Receiver(allow_unauthenticated=True)
    calls: list[str] = []
    receiver.on_message(failing(ValueError("one")))
    receiver.on_message(failing(ValueError("two")))
    event = message_events()[0]
    for failure in receiver.emit(event):
        sink.put(DeadLetter.from_failure(failure))
    assert len(sink) == 2

    fixed = Receiver(allow_unauthenticated=True)
    fixed.on_message(lambda e: calls.append("ran"))
    report = replay(sink, fixed)
    assert calls == ["ran"] and report.succeeded == (event,)
    assert len(sink) == 0


def test_replay_limit_and_failed_signal(sink: DeadLetterSink) -> None:
    receiver = Receiver(allow_unauthenticated=True)
    receiver.on_message(failing(ValueError("still broken")))
    for event in message_events():
        sink.put(DeadLetter.from_error(event, "lost at shutdown"))
    failed: list[object] = []
    with signals.handler_failed.connected_to(
        lambda sender, **kw: failed.append(kw["event"]), sender=receiver
    ):
        report = replay(sink, receiver, limit=1)
    assert len(report.failed) == 1 and failed == [message_events()[0]]
    assert len(sink) == len(message_events())
    assert "still broken" in sink.entries()[-1].error


def test_unreadable_entries_are_kept_and_reported(tmp_path: Path) -> None:
    path = tmp_path / "dead.jsonl"
    sink = JsonLinesDeadLetterSink(path)
    event = message_events()[0]
    sink.put(DeadLetter.from_error(event, "boom"))
    future = DeadLetter.from_error({"v": 99, "type": "hologram"}, "from a newer release")
    sink.put(future)
    with path.open("a", encoding="utf-8") as file:
        file.write('{"v": 1, "half a line\n')
    receiver = Receiver(allow_unauthenticated=True)
    report = replay(sink, receiver)
    assert report.succeeded == (event,)
    assert [letter.id for letter in report.skipped] == [future.id]
    lines = path.read_text("utf-8").splitlines()
    assert len(lines) == 2 and "half a line" in lines[1]


def _append_many(path: str, start: int, count: int) -> None:
    sink = JsonLinesDeadLetterSink(path, fsync=False)
    for number in range(start, start + count):
        event = MessageEvent(channel="c", uuid=str(number), timestamp=None, message="m")
        sink.put(DeadLetter.from_error(event, "boom"))


def test_processes_share_the_file_without_losing_lines(tmp_path: Path) -> None:
    path = str(tmp_path / "dead.jsonl")
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_append_many, args=(path, n * 100, 100)) for n in range(3)]
    for worker in workers:
        worker.start()
    sink = JsonLinesDeadLetterSink(path)
    # Remove entries while the other processes append: no appended line may be lost.
    removed = 0
    for _ in range(20):
        entries = sink.entries()
        removed += sink.remove([letter.id for letter in entries[:5]])
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    assert removed + len(sink.entries()) == 300
    uuids = [letter.load_event().uuid for letter in sink.entries()]
    assert len(uuids) == len(set(uuids))


class BrokenSink(DeadLetterSink):
    """A sink whose storage is gone."""

    def put(self, letter: DeadLetter) -> None:
        raise OSError("disk full")

    def entries(self) -> list[DeadLetter]:
        return []

    def remove(self, ids: t.Collection[str]) -> int:
        return 0


def test_a_sink_that_fails_leaves_the_entry_in_the_log(caplog: pytest.LogCaptureFixture) -> None:
    from yalgaar_receiver.delivery import ThreadPoolDispatcher
    from yalgaar_receiver.testing import capture_events, message, message_envelope

    key = "ck-4704a1b2c3d4402f"
    body = message_envelope(message("c", "u", "kept in the log"), client_key=key).to_bytes()
    # Given up by the receiver (max_attempts), then by the thread pool (a handler failure).
    inline = Receiver([key], max_attempts=1, dead_letters=BrokenSink())
    inline.on_message(failing(RuntimeError("always")))
    assert inline.handle(body).dead_lettered
    pool = ThreadPoolDispatcher(max_workers=1, dead_letters=BrokenSink())
    threaded = Receiver([key], dispatcher=pool)
    threaded.on_message(failing(RuntimeError("always")))
    with capture_events(threaded) as capture:
        threaded.handle(body)
        capture.wait_for(1)
    assert pool.close(timeout=10)
    kept = [r for r in caplog.records if r.getMessage().startswith("Could not store a dead")]
    assert [r.levelname for r in kept] == ["CRITICAL", "CRITICAL"]
    assert all("kept in the log" in r.getMessage() and r.exc_info for r in kept)
