"""ThreadPoolDispatcher: answer once queued, a bounded queue, 503 when full, drain on close."""

from __future__ import annotations

import collections
import json
import subprocess
import sys
import threading
import time
import typing as t
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from flask import Flask
from werkzeug.serving import make_server

from yalgaar_receiver import (
    ConfigurationError,
    DispatchUnavailableError,
    Event,
    MessageEvent,
    Receiver,
    create_blueprint,
    signals,
)
from yalgaar_receiver.delivery import JsonLinesDeadLetterSink, ThreadPoolDispatcher, replay

from ..payloads import KEY

WAIT = 30.0  # upper bound of every wait; never reached when the code works


def body(*uuids: str, channel: str = "orders") -> bytes:
    data = [{"channel": channel, "uuid": u, "timestamp": "1521609600", "message": u} for u in uuids]
    return json.dumps({"items": {"source": "Message", "clientKey": KEY, "data": data}}).encode()


def wait_until(condition: t.Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def make_app(receiver: Receiver) -> Flask:
    app = Flask(__name__)
    app.config["YALGAAR_ALLOW_CLIENT_KEY_ONLY"] = True  # see test_auth.py
    app.register_blueprint(create_blueprint(receiver), url_prefix="/yalgaar")
    return app


def detail(problem: t.Any) -> str:
    assert isinstance(problem, dict)
    return str(problem["detail"])


class Recorder:
    """A handler that waits at a gate and counts each event it ran."""

    def __init__(self, dispatcher: ThreadPoolDispatcher) -> None:
        self.gate = threading.Event()
        self.seen: collections.Counter[str] = collections.Counter()
        self.lock = threading.Lock()
        self.dispatcher = dispatcher
        self.most_queued = 0

    def __call__(self, event: Event) -> None:
        with self.lock:
            self.most_queued = max(self.most_queued, self.dispatcher.queued)
        assert self.gate.wait(WAIT)
        assert event.uuid is not None
        with self.lock:
            self.seen[event.uuid] += 1


@pytest.fixture
def dispatcher() -> t.Iterator[ThreadPoolDispatcher]:
    pool = ThreadPoolDispatcher(max_workers=2, queue_size=10, retry_after=3)
    try:
        yield pool
    finally:
        pool.close(WAIT)


def test_the_answer_goes_out_before_the_handlers_run(dispatcher: ThreadPoolDispatcher) -> None:
    receiver = Receiver(client_keys=[KEY], dispatcher=dispatcher)
    recorder = Recorder(dispatcher)
    receiver.on_message(recorder)
    response = make_app(receiver).test_client().post("/yalgaar/message", data=body("a", "b"))
    assert response.status_code == 200
    assert response.json == {"accepted": 2, "rejected": [], "failed": 0}
    assert not recorder.seen
    recorder.gate.set()
    assert dispatcher.close(WAIT)
    assert recorder.seen == {"a": 1, "b": 1}


def test_a_full_queue_answers_503_and_queues_nothing(dispatcher: ThreadPoolDispatcher) -> None:
    receiver = Receiver(client_keys=[KEY], dispatcher=dispatcher)
    recorder = Recorder(dispatcher)
    receiver.on_message(recorder)
    client = make_app(receiver).test_client()
    accepted: list[str] = []
    number = 0
    # Two threads hold one event each, ten wait: twelve single events fit, the next does not.
    while True:
        number += 1
        response = client.post("/yalgaar/", data=body(f"e{number}"))
        if response.status_code != 200:
            break
        accepted.append(f"e{number}")
        assert number < 50
    assert 10 <= len(accepted) <= 12
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "3"
    assert response.mimetype == "application/problem+json"
    assert "no room" in detail(response.json)
    recorder.gate.set()
    assert dispatcher.close(WAIT)
    assert recorder.seen == {u: 1 for u in accepted}


def test_a_batch_is_queued_whole_or_not_at_all() -> None:
    gate = threading.Event()
    ran: list[str] = []

    def emit(event: Event) -> tuple[()]:
        assert gate.wait(WAIT)
        ran.append(event.uuid or "")
        return ()

    def events(*uuids: str) -> list[Event]:
        return [MessageEvent(channel="c", uuid=u, timestamp=None, message="m") for u in uuids]

    with ThreadPoolDispatcher(max_workers=1, queue_size=5) as dispatcher:
        dispatcher.dispatch(events("a"), emit)
        wait_until(lambda: dispatcher.queued == 0)  # the worker holds "a"
        dispatcher.dispatch(events("b", "c", "d"), emit)
        with pytest.raises(DispatchUnavailableError):
            dispatcher.dispatch(events("e", "f", "g"), emit)
        assert dispatcher.queued == 3
        dispatcher.dispatch(events("h", "i"), emit)
        assert dispatcher.queued == 5
        gate.set()
    assert ran == ["a", "b", "c", "d", "h", "i"]


def test_a_batch_larger_than_the_queue_is_413(dispatcher: ThreadPoolDispatcher) -> None:
    receiver = Receiver(client_keys=[KEY], dispatcher=dispatcher)
    client = make_app(receiver).test_client()
    response = client.post("/yalgaar/", data=body(*(str(i) for i in range(11))))
    assert response.status_code == 413
    assert "queue_size=10" in detail(response.json)


def test_fifty_concurrent_posters_against_a_real_server() -> None:
    dispatcher = ThreadPoolDispatcher(max_workers=4, queue_size=40, retry_after=1)
    receiver = Receiver(client_keys=[KEY], dispatcher=dispatcher)
    recorder = Recorder(dispatcher)
    receiver.on_message(recorder)
    server = make_server("127.0.0.1", 0, make_app(receiver), threaded=True)
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    url = f"http://127.0.0.1:{server.server_port}/yalgaar/message"
    outcomes: dict[int, list[tuple[int, str | None]]] = collections.defaultdict(list)
    bodies = {n: [f"p{n}-{i}" for i in range(1 + n % 3)] for n in range(50)}  # 1 to 3 events

    def post(n: int) -> int:
        request = urllib.request.Request(url, data=body(*bodies[n]), method="POST")
        try:
            with urllib.request.urlopen(request, timeout=WAIT) as answer:
                status, retry = int(answer.status), None
        except urllib.error.HTTPError as error:
            status, retry = error.code, error.headers.get("Retry-After")
            error.close()
        outcomes[n].append((status, retry))
        return status

    def poster(n: int, start: threading.Barrier) -> None:
        start.wait(WAIT)
        post(n)

    try:
        # Round one, handlers held at the gate: the queue fills, then every body gets 503.
        start = threading.Barrier(50)
        threads = [threading.Thread(target=poster, args=(n, start)) for n in range(50)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(WAIT)
        assert all(len(outcomes[n]) == 1 for n in range(50))
        first = {n: outcomes[n][0] for n in range(50)}
        assert {status for status, _ in first.values()} == {200, 503}
        assert all(retry == "1" for status, retry in first.values() if status == 503)
        held = sum(len(bodies[n]) for n, (status, _) in first.items() if status == 200)
        assert 40 - 2 <= held <= 40 + 4  # the bound: queue_size waiting plus one per thread
        # Round two: handlers run again, and every refused body is sent again until taken.
        recorder.gate.set()
        for n in [n for n, (status, _) in first.items() if status == 503]:
            deadline = time.monotonic() + WAIT
            while post(n) != 200:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        assert dispatcher.close(WAIT)
    finally:
        recorder.gate.set()
        server.shutdown()
        server.server_close()
        dispatcher.close(WAIT)
    expected = {uuid for uuids in bodies.values() for uuid in uuids}
    assert set(recorder.seen) == expected
    assert set(recorder.seen.values()) == {1}  # every accepted event ran exactly once
    assert recorder.most_queued <= 40


def test_close_drains_the_queue_and_later_requests_get_503() -> None:
    dispatcher = ThreadPoolDispatcher(max_workers=1, queue_size=50)
    receiver = Receiver(client_keys=[KEY], dispatcher=dispatcher)
    order: list[str] = []

    @receiver.on_message
    def slow(event: Event) -> None:
        time.sleep(0.002)  # a little work per event, so that later ones queue behind it
        assert event.uuid is not None
        order.append(event.uuid)

    client = make_app(receiver).test_client()
    uuids = [f"u{i}" for i in range(30)]
    for i in range(0, 30, 3):
        assert client.post("/yalgaar/", data=body(*uuids[i : i + 3])).status_code == 200
    assert dispatcher.close(WAIT) is True
    assert order == uuids  # one worker keeps the order
    response = client.post("/yalgaar/", data=body("late"))
    assert response.status_code == 503 and "shutting down" in detail(response.json)
    assert dispatcher.close(WAIT) is True  # a second close does no harm


def test_close_timeout_keeps_unrun_events_as_dead_letters(tmp_path: Path) -> None:
    sink = JsonLinesDeadLetterSink(tmp_path / "dead.jsonl")
    dispatcher = ThreadPoolDispatcher(max_workers=1, queue_size=10, dead_letters=sink)
    receiver = Receiver(client_keys=[KEY], dispatcher=dispatcher)
    recorder = Recorder(dispatcher)
    receiver.on_message(recorder)
    receiver.handle(body("a", "b", "c"))
    wait_until(lambda: dispatcher.queued == 2)  # the worker took "a" and waits at the gate
    assert dispatcher.close(0.05) is False
    assert sorted(letter.load_event().uuid or "" for letter in sink.entries()) == ["b", "c"]
    recorder.gate.set()
    report = replay(sink, receiver)
    assert {e.uuid for e in report.succeeded} == {"b", "c"}
    assert recorder.seen == {"a": 1, "b": 1, "c": 1}


def test_handler_failures_are_signalled_and_dead_lettered(tmp_path: Path) -> None:
    sink = JsonLinesDeadLetterSink(tmp_path / "dead.jsonl")
    dispatcher = ThreadPoolDispatcher(max_workers=2, dead_letters=sink)
    receiver = Receiver(client_keys=[KEY], dispatcher=dispatcher)
    failed: list[Event] = []

    @receiver.on_message
    def fragile(event: Event) -> None:
        if event.uuid == "bad":
            raise RuntimeError("cannot store")

    with signals.handler_failed.connected_to(
        lambda sender, **kw: failed.append(kw["event"]), sender=receiver
    ):
        outcome = receiver.handle(body("good", "bad"))
        assert not outcome.failed  # nothing is known when the request is answered
        assert dispatcher.close(WAIT)
    assert [e.uuid for e in failed] == ["bad"]
    (letter,) = sink.entries()
    assert letter.handler is not None and letter.handler.endswith("fragile")
    assert letter.error == "RuntimeError: cannot store"
    assert letter.raw == {"channel": "orders", "uuid": "bad", "timestamp": "1521609600",
                          "message": "bad"}  # fmt: skip


def test_an_emit_that_raises_loses_no_event_and_no_thread(tmp_path: Path) -> None:
    sink = JsonLinesDeadLetterSink(tmp_path / "dead.jsonl")
    dispatcher = ThreadPoolDispatcher(max_workers=1, dead_letters=sink)
    ran: list[Event] = []

    def emit(event: Event) -> tuple[()]:
        if event.uuid == "x":
            raise ConnectionError("dedupe store unreachable")
        ran.append(event)
        return ()

    events = [MessageEvent(channel="c", uuid=u, timestamp=None, message="m") for u in "xyz"]
    assert dispatcher.dispatch(events, emit) == ()
    assert dispatcher.close(WAIT)
    assert [e.uuid for e in ran] == ["y", "z"]
    (letter,) = sink.entries()
    assert letter.handler is None and "dedupe store unreachable" in letter.error


def test_without_a_sink_an_unrun_event_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    dispatcher = ThreadPoolDispatcher(max_workers=1)
    gate, started = threading.Event(), threading.Event()
    event = MessageEvent(channel="c", uuid="u", timestamp=None, message="keep me")

    def held(event: Event) -> tuple[()]:
        started.set()
        gate.wait(WAIT)
        return ()

    dispatcher.dispatch([event, event], held)
    assert started.wait(WAIT)  # the first event is running, the second waits in the queue
    assert dispatcher.close(0.05) is False
    gate.set()
    assert '"message":"keep me"' in caplog.text


@pytest.mark.parametrize(
    "kwargs",
    [{"max_workers": 0}, {"queue_size": -1}, {"queue_size": True}, {"retry_after": 0}],
)
def test_bad_settings_are_refused(kwargs: dict[str, t.Any]) -> None:
    with pytest.raises(ConfigurationError):
        ThreadPoolDispatcher(**kwargs)


def test_a_closed_dispatcher_refuses_directly() -> None:
    dispatcher = ThreadPoolDispatcher()
    dispatcher.close()
    event = MessageEvent(channel="c", uuid="u", timestamp=None, message="m")
    with pytest.raises(DispatchUnavailableError) as caught:
        dispatcher.dispatch([event], lambda e: ())
    assert caught.value.retry_after == 5.0


EXIT_SCRIPT = """
import json, sys, time
from yalgaar_receiver import Receiver
from yalgaar_receiver.delivery import ThreadPoolDispatcher

out = open(sys.argv[1], "a")
receiver = Receiver(allow_unauthenticated=True,
                    dispatcher=ThreadPoolDispatcher(max_workers=1, queue_size=100))

@receiver.on_message
def slow(event):
    time.sleep(0.01)
    out.write(event.uuid + "\\n")
    out.flush()

data = [{"channel": "c", "uuid": str(i), "message": "m"} for i in range(20)]
receiver.handle(json.dumps({"items": {"source": "Message", "data": data}}))
print("queued", flush=True)
"""


def test_interpreter_exit_drains_the_queue(tmp_path: Path) -> None:
    out = tmp_path / "handled.txt"
    script = tmp_path / "exit_script.py"
    script.write_text(EXIT_SCRIPT)
    finished = subprocess.run(
        [sys.executable, str(script), str(out)],
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr
    assert finished.stdout == "queued\n"
    assert out.read_text().split() == [str(i) for i in range(20)]


def test_an_emit_that_says_not_now_is_tried_again(tmp_path: Path) -> None:
    sink = JsonLinesDeadLetterSink(tmp_path / "dead.jsonl")
    tries: collections.Counter[str] = collections.Counter()

    def emit(event: Event) -> tuple[()]:
        assert event.uuid is not None
        tries[event.uuid] += 1
        if event.uuid == "no" or tries[event.uuid] < 2:
            raise DispatchUnavailableError("another delivery is running", retry_after=0.01)
        return ()

    events = [
        MessageEvent(channel="c", uuid=u, timestamp=None, message="m") for u in ("soon", "no")
    ]
    with ThreadPoolDispatcher(max_workers=1, dead_letters=sink) as dispatcher:
        dispatcher.dispatch(events, emit)
    assert tries == {"soon": 2, "no": 3}
    (letter,) = sink.entries()
    assert letter.load_event().uuid == "no"
    assert letter.error == "DispatchUnavailableError: another delivery is running"


def test_a_forked_child_starts_its_own_threads(tmp_path: Path) -> None:
    out = tmp_path / "handled.txt"
    script = tmp_path / "fork_script.py"
    script.write_text(
        "import os, sys, time\n"
        "from yalgaar_receiver import MessageEvent\n"
        "from yalgaar_receiver.delivery import ThreadPoolDispatcher\n"
        "pool = ThreadPoolDispatcher(max_workers=2, queue_size=10)\n"
        "def emit(event):\n"
        "    with open(sys.argv[1], 'a') as file:\n"
        "        file.write(f'{event.uuid} {os.getpid()}\\n')\n"
        "    return ()\n"
        "def send(name):\n"
        "    event = MessageEvent(channel='c', uuid=name, timestamp=None, message='m')\n"
        "    pool.dispatch([event], emit)\n"
        "send('parent-1')\n"
        "child = os.fork()\n"
        "if child == 0:\n"
        "    send('child')\n"
        "    os._exit(0 if pool.close(10) else 1)\n"
        "send('parent-2')\n"
        "_, status = os.waitpid(child, 0)\n"
        "assert pool.close(10) and os.waitstatus_to_exitcode(status) == 0\n"
        "print(child)\n"
    )
    finished = subprocess.run(
        [sys.executable, str(script), str(out)],
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr
    child = finished.stdout.strip()
    handled = dict(line.split() for line in out.read_text().splitlines())
    assert set(handled) == {"parent-1", "parent-2", "child"}
    assert handled["child"] == child
    assert handled["parent-1"] == handled["parent-2"] != child


def test_a_dispatcher_with_attach_learns_its_receiver() -> None:
    class Remote(ThreadPoolDispatcher):
        attached: list[Receiver]

        def attach(self, receiver: Receiver) -> None:
            self.attached = [*getattr(self, "attached", []), receiver]

    dispatcher = Remote()
    receiver = Receiver(allow_unauthenticated=True, dispatcher=dispatcher)
    assert dispatcher.attached == [receiver]


def test_deduplication_works_on_the_pool_threads() -> None:
    from yalgaar_receiver.delivery.dedupe import MemoryDedupeStore

    dispatcher = ThreadPoolDispatcher(max_workers=3, queue_size=50)
    receiver = Receiver(client_keys=[KEY], dispatcher=dispatcher, dedupe=MemoryDedupeStore())
    seen: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()

    @receiver.on_message
    def count(event: Event) -> None:
        with lock:
            seen[event.uuid or ""] += 1

    client = make_app(receiver).test_client()
    repeated = body("a", "b", "c")  # each item has a timestamp, so each has a key
    for _ in range(3):
        assert client.post("/yalgaar/", data=repeated).status_code == 200
        wait_until(lambda: dispatcher.queued == 0)
    assert dispatcher.close(WAIT)
    assert seen == {"a": 1, "b": 1, "c": 1}
