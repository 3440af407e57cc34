"""De-duplication in the receiver: the key recipe, and claim/done/release around the handlers."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import threading
import typing as t
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import pytest
from flask import Flask

from yalgaar_receiver import (
    ConfigurationError,
    DispatchUnavailableError,
    Event,
    MessageEvent,
    Receiver,
    create_blueprint,
    parse_envelope,
    signals,
)
from yalgaar_receiver.delivery.dedupe import (
    BUSY_RETRY_AFTER,
    STORE_RETRY_AFTER,
    Claim,
    ClaimState,
    DedupeStore,
    MemoryDedupeStore,
    event_key,
)

PAYLOADS = Path(__file__).parents[1] / "payloads"
KEY = "ck-4704a1b2c3d4402f"


def payload(name: str) -> bytes:
    return (PAYLOADS / name).read_bytes()


def events_of(name: str) -> tuple[Event, ...]:
    return parse_envelope(payload(name)).events


class Recorder:
    """Handlers that record the event each time they run; thread-safe."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Event]] = []
        self._lock = threading.Lock()

    def record(self, name: str, event: Event) -> None:
        with self._lock:
            self.calls.append((name, event))

    def count(self, name: str, event: Event) -> int:
        return sum(1 for n, e in self.calls if n == name and e == event)


def build(store: DedupeStore | None = None, **options: t.Any) -> tuple[Receiver, Recorder]:
    if store is None:
        store = MemoryDedupeStore()
    receiver = Receiver(client_keys=[KEY], dedupe=store, **options)
    recorder = Recorder()

    @receiver.on_presence
    def presence(event: Event) -> None:
        recorder.record("presence", event)

    @receiver.on_message
    def message(event: Event) -> None:
        recorder.record("message", event)

    return receiver, recorder


# -- the key -----------------------------------------------------------------------------------


def test_the_key_recipe_is_pinned() -> None:
    bind, _, _, message, _ = events_of("dedupe_batch.json")
    canonical = (
        '["yalgaar-event-key/1","presence","ck-4704a1b2c3d4402f","orders","member-17",'
        '1521609600000000,"bind"]'
    )
    assert event_key(bind) == hashlib.sha256(canonical.encode("ascii")).hexdigest()
    assert event_key(bind) == "fdef7683c34e57dc52a51cf42d08d2118ba6df15983dba4c41dd99b4515b5375"
    canonical = (
        '["yalgaar-event-key/1","message","ck-4704a1b2c3d4402f","orders","member-18",'
        '1521609602000000,"{\\"lat\\":1}"]'
    )
    assert event_key(message) == hashlib.sha256(canonical.encode("ascii")).hexdigest()


def test_the_key_is_the_same_in_another_process_with_another_hash_seed() -> None:
    code = (
        "import sys; from pathlib import Path; "
        "from yalgaar_receiver import parse_envelope; "
        "from yalgaar_receiver.delivery.dedupe import event_key; "
        "batch = parse_envelope(Path(sys.argv[1]).read_bytes()); "
        "print(' '.join(event_key(e) or '-' for e in batch.events))"
    )
    environment = {**os.environ, "PYTHONHASHSEED": "12345"}
    result = subprocess.run(
        [sys.executable, "-c", code, str(PAYLOADS / "dedupe_batch.json")],
        capture_output=True,
        text=True,
        timeout=60,
        env=environment,
        check=True,
    )
    assert result.stdout.split() == [event_key(e) for e in events_of("dedupe_batch.json")]


def test_the_same_event_spelled_differently_has_one_key() -> None:
    # "bind", "Bind" and "subscribe" are one action; seconds and milliseconds one time.
    keys = {event_key(e) for e in events_of("dedupe_repeated_item.json")}
    assert len(keys) == 1


def test_every_field_of_the_recipe_changes_the_key() -> None:
    bind, *_ = events_of("dedupe_batch.json")
    message = events_of("dedupe_batch.json")[3]
    assert isinstance(message, MessageEvent)
    variants = [
        bind,
        replace(bind, client_key="ck-other"),
        replace(bind, channel="other"),
        replace(bind, uuid="member-99"),
        replace(bind, uuid=None),
        replace(bind, timestamp=datetime(2018, 3, 21, 5, 20, 0, 1, tzinfo=timezone.utc)),
        events_of("dedupe_batch.json")[2],  # unbind
        message,
        replace(message, message="other"),
    ]
    keys = [event_key(v) for v in variants]
    assert None not in keys
    assert len(set(keys)) == len(keys)


def test_extra_fields_and_the_raw_item_do_not_change_the_key() -> None:
    bind, *_ = events_of("dedupe_batch.json")
    assert event_key(replace(bind, extra={"serial": 7}, raw={"x": 1})) == event_key(bind)


def test_two_identical_messages_in_the_same_second_share_a_key() -> None:
    message = events_of("dedupe_batch.json")[3]
    assert event_key(replace(message)) == event_key(message)


def test_an_event_without_a_timestamp_has_no_key() -> None:
    bind, *_ = events_of("dedupe_batch.json")
    assert event_key(replace(bind, timestamp=None)) is None


def test_a_naive_timestamp_is_taken_as_utc() -> None:
    bind, *_ = events_of("dedupe_batch.json")
    assert bind.timestamp is not None
    naive = replace(bind, timestamp=bind.timestamp.replace(tzinfo=None))
    assert event_key(naive) == event_key(bind)


# -- the receiver ------------------------------------------------------------------------------


def test_a_resend_after_success_does_not_run_again() -> None:
    receiver, recorder = build()
    first = receiver.handle(payload("dedupe_batch.json"))
    assert len(first.accepted) == 5
    assert first.duplicates == ()
    assert len(recorder.calls) == 5
    second = receiver.handle(payload("dedupe_batch.json"))
    assert second.duplicates == second.accepted
    assert second.failed == ()
    assert len(recorder.calls) == 5


def test_a_duplicate_inside_one_batch_runs_once() -> None:
    receiver, recorder = build()
    outcome = receiver.handle(payload("dedupe_repeated_item.json"))
    assert len(outcome.accepted) == 3
    assert outcome.duplicates == outcome.accepted[1:]
    assert [name for name, _ in recorder.calls] == ["presence"]


def test_a_duplicate_is_signalled_and_logged_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    receiver, _ = build()
    seen: list[Event] = []

    def on_duplicate(sender: Receiver, event: Event) -> None:
        assert sender is receiver
        seen.append(event)

    caplog.set_level("DEBUG", logger="yalgaar_receiver")
    with signals.duplicate_event.connected_to(on_duplicate, sender=receiver):
        outcome = receiver.handle(payload("dedupe_repeated_item.json"))
    assert seen == list(outcome.duplicates)
    debug = [r for r in caplog.records if r.levelname == "DEBUG" and "duplicate" in r.message]
    assert len(debug) == 2


def test_a_resend_after_a_failure_runs_again() -> None:
    # The trap of dj-stripe issue 832: a key recorded before the handlers ran would make this
    # failure permanent.
    receiver, recorder = build()
    attempts = []

    @receiver.on_bind
    def flaky(event: Event) -> None:
        attempts.append(event)
        if len(attempts) == 1:
            raise RuntimeError("database down")

    first = receiver.handle(payload("dedupe_batch.json"))
    assert [f.handler for f in first.failed] == [flaky]
    assert first.duplicates == ()
    second = receiver.handle(payload("dedupe_batch.json"))
    assert second.failed == ()
    # Only the failed event runs again, with every one of its handlers; the others are
    # duplicates.
    assert second.duplicates == first.accepted[1:]
    bind_17, bind_18 = first.accepted[:2]
    assert attempts == [bind_17, bind_18, bind_17]
    assert recorder.count("presence", first.accepted[0]) == 2
    assert len(recorder.calls) == 6
    third = receiver.handle(payload("dedupe_batch.json"))
    assert third.duplicates == third.accepted


def test_a_failing_signal_subscriber_also_releases_the_key() -> None:
    receiver, recorder = build()

    def broken(sender: Receiver, event: Event) -> None:
        raise RuntimeError("metrics down")

    with signals.message.connected_to(broken, sender=receiver):
        first = receiver.handle(payload("dedupe_batch.json"))
    assert len(first.failed) == 2
    second = receiver.handle(payload("dedupe_batch.json"))
    assert len(second.duplicates) == 3
    assert len(recorder.calls) == 7


def test_an_interrupted_handler_releases_the_key() -> None:
    receiver, recorder = build()
    interrupt = [True]

    @receiver.on_bind
    def stop(event: Event) -> None:
        if interrupt:
            interrupt.pop()
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        receiver.handle(payload("dedupe_repeated_item.json"))
    outcome = receiver.handle(payload("dedupe_repeated_item.json"))
    assert len(outcome.duplicates) == 2
    assert len(recorder.calls) == 2


def test_emit_is_deduplicated_too() -> None:
    receiver, recorder = build()
    bind = events_of("dedupe_batch.json")[0]
    assert receiver.emit(bind) == ()
    assert receiver.emit(bind) == ()
    assert len(recorder.calls) == 1


def test_a_key_function_can_leave_messages_out() -> None:
    def presence_only(event: Event) -> str | None:
        return None if isinstance(event, MessageEvent) else event_key(event)

    receiver, recorder = build(dedupe_key=presence_only)
    receiver.handle(payload("dedupe_batch.json"))
    outcome = receiver.handle(payload("dedupe_batch.json"))
    assert len(outcome.duplicates) == 3
    assert [name for name, _ in recorder.calls].count("message") == 4


def test_without_a_store_every_delivery_runs() -> None:
    receiver = Receiver(client_keys=[KEY])
    runs: list[Event] = []
    receiver.on_event(runs.append)
    receiver.handle(payload("dedupe_batch.json"))
    outcome = receiver.handle(payload("dedupe_batch.json"))
    assert outcome.duplicates == ()
    assert len(runs) == 10


def test_an_event_running_elsewhere_is_refused_for_now() -> None:
    store = MemoryDedupeStore()
    first, _ = build(store)
    second, recorder = build(store)  # another receiver, in another thread, same keys
    started, finish = threading.Event(), threading.Event()

    @first.on_bind
    def slow(event: Event) -> None:
        started.set()
        assert finish.wait(10)

    body = payload("dedupe_repeated_item.json")
    thread = threading.Thread(target=first.handle, args=(body,))
    thread.start()
    try:
        assert started.wait(10)
        with pytest.raises(DispatchUnavailableError) as caught:
            second.handle(body)
        assert caught.value.retry_after == BUSY_RETRY_AFTER
        assert recorder.calls == []
    finally:
        finish.set()
        thread.join(10)
    assert not thread.is_alive()
    assert len(second.handle(body).duplicates) == 3


def test_a_crashed_claim_is_retried_after_its_lease() -> None:
    clock = [0.0]
    store = MemoryDedupeStore(lease=30, timer=lambda: clock[0])
    receiver, recorder = build(store)
    bind = events_of("dedupe_repeated_item.json")[0]
    key = event_key(bind)
    assert key is not None
    assert store.claim(key).state is ClaimState.CLAIMED  # what a process that died leaves
    with pytest.raises(DispatchUnavailableError):
        receiver.emit(bind)
    clock[0] += 31
    assert receiver.emit(bind) == ()
    assert len(recorder.calls) == 1


class BrokenStore:
    """A store of the application's own, with the per-event methods only (so the receiver
    claims and settles one event at a time), whose storage fails for the methods listed in
    ``broken``."""

    def __init__(self, *broken: str, **options: t.Any) -> None:
        self.inner = MemoryDedupeStore(**options)
        self.broken = set(broken)

    def claim(self, key: str) -> Claim:
        if "claim" in self.broken:
            raise ConnectionError("store unreachable")
        return self.inner.claim(key)

    def done(self, claim: Claim) -> bool:
        if "done" in self.broken:
            raise ConnectionError("store unreachable")
        return self.inner.done(claim)

    def release(self, claim: Claim) -> bool:
        if "release" in self.broken:
            raise ConnectionError("store unreachable")
        return self.inner.release(claim)


class BrokenBatchStore(MemoryDedupeStore):
    """A memory store (batch methods included) whose batch calls fail while ``broken``."""

    broken = False

    def claim_many(self, keys: t.Sequence[str]) -> list[Claim]:
        if self.broken:
            raise ConnectionError("store unreachable")
        return super().claim_many(keys)

    def settle_many(self, outcomes: t.Sequence[tuple[Claim, bool]]) -> list[bool]:
        if self.broken:
            raise ConnectionError("store unreachable")
        return super().settle_many(outcomes)


def test_a_store_that_fails_to_claim_refuses_the_event() -> None:
    receiver, recorder = build(BrokenStore("claim"))
    with pytest.raises(DispatchUnavailableError) as caught:
        receiver.handle(payload("dedupe_batch.json"))
    assert caught.value.retry_after == STORE_RETRY_AFTER
    assert isinstance(caught.value.__cause__, ConnectionError)
    assert recorder.calls == []


def test_a_resend_after_the_store_failed_mid_batch_runs_only_what_did_not_run() -> None:
    store = BrokenStore()
    receiver, recorder = build(store)
    original_claim = store.claim
    claims = []

    def claim_then_break(key: str) -> Claim:
        claims.append(key)
        if len(claims) == 4:
            store.broken.add("claim")
        return original_claim(key)

    store.claim = claim_then_break  # type: ignore[method-assign]
    with pytest.raises(DispatchUnavailableError):
        receiver.handle(payload("dedupe_batch.json"))
    assert len(recorder.calls) == 3
    store.broken.clear()
    outcome = receiver.handle(payload("dedupe_batch.json"))
    assert outcome.duplicates == outcome.accepted[:3]
    assert [event for _, event in recorder.calls] == list(outcome.accepted)


def test_a_store_that_fails_to_mark_done_still_answers_with_the_handlers_result(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = [0.0]
    store = BrokenStore("done", lease=30, timer=lambda: clock[0])
    receiver, recorder = build(store)
    outcome = receiver.handle(payload("dedupe_batch.json"))
    assert outcome.failed == ()
    assert len(recorder.calls) == 5
    assert "failed to settle the claims on 1 event(s)" in caplog.text
    # The claims are left to expire: until then a resend is refused, not dropped; after the
    # lease the events run again (at least once, never lost).
    with pytest.raises(DispatchUnavailableError):
        receiver.handle(payload("dedupe_batch.json"))
    clock[0] += 31
    store.broken.clear()
    receiver.handle(payload("dedupe_batch.json"))
    assert len(recorder.calls) == 10


def test_a_store_that_fails_to_release_leaves_the_claim_to_expire(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = [0.0]
    store = BrokenStore("release", lease=30, timer=lambda: clock[0])
    receiver, recorder = build(store)

    @receiver.on_bind
    def failing(event: Event) -> None:
        raise RuntimeError("boom")

    outcome = receiver.handle(payload("dedupe_batch.json"))
    assert len(outcome.failed) == 2
    assert "failed to settle the claims on 1 event(s)" in caplog.text
    with pytest.raises(DispatchUnavailableError):
        receiver.handle(payload("dedupe_batch.json"))
    clock[0] += 31
    store.broken.clear()
    # Only the two binds whose handler failed run again.
    second = receiver.handle(payload("dedupe_batch.json"))
    assert len(second.duplicates) == 3
    assert len(recorder.calls) == 7


# -- over HTTP ---------------------------------------------------------------------------------


def app_for(receiver: Receiver) -> Flask:
    app = Flask(__name__)
    app.config["YALGAAR_ALLOW_CLIENT_KEY_ONLY"] = True  # see test_auth.py
    app.register_blueprint(create_blueprint(receiver), url_prefix="/yalgaar")
    return app


def test_the_answer_counts_duplicates() -> None:
    receiver, _ = build()
    client = app_for(receiver).test_client()
    first = client.post("/yalgaar/", data=payload("dedupe_repeated_item.json"))
    assert first.status_code == 200
    assert first.get_json() == {"accepted": 3, "rejected": [], "failed": 0, "duplicates": 2}
    second = client.post("/yalgaar/", data=payload("dedupe_repeated_item.json"))
    assert second.get_json()["duplicates"] == 3


def test_a_store_failure_answers_503_with_retry_after() -> None:
    receiver, recorder = build(BrokenStore("claim"))
    response = app_for(receiver).test_client().post("/yalgaar/", data=payload("dedupe_batch.json"))
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["status"] == 503
    assert "send again later" in body["detail"]
    assert recorder.calls == []


def test_the_summary_json_is_unchanged_without_dedupe() -> None:
    receiver = Receiver(client_keys=[KEY])
    response = app_for(receiver).test_client().post("/yalgaar/", data=payload("dedupe_batch.json"))
    assert json.loads(response.data) == {"accepted": 5, "rejected": [], "failed": 0}


def test_a_receiver_refuses_what_is_no_store_or_key_function() -> None:
    with pytest.raises(ConfigurationError, match="dedupe must be a store"):
        Receiver(client_keys=[KEY], dedupe=True)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="dedupe_key must be a function"):
        Receiver(client_keys=[KEY], dedupe=MemoryDedupeStore(), dedupe_key="sha256")  # type: ignore[arg-type]


def test_a_key_function_that_raises_fails_the_request() -> None:
    def broken(event: Event) -> str | None:
        raise LookupError("no id in the message")

    receiver, recorder = build(dedupe_key=broken)
    with pytest.raises(LookupError):
        receiver.handle(payload("dedupe_batch.json"))
    assert recorder.calls == []


def test_the_code_in_the_docs_runs() -> None:
    # Building a Redis client connects to nothing, so the Redis example runs without a server.
    text = (Path(__file__).parents[2] / "docs" / "deduplication.md").read_text("utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    assert len(blocks) == 3
    for block in blocks:
        namespace: dict[str, t.Any] = {}
        exec(compile(block, "docs/deduplication.md", "exec"), namespace)
        assert isinstance(namespace["receiver"], Receiver)
        assert namespace["receiver"].dedupe is not None


def test_the_dedupe_module_does_not_import_redis() -> None:
    code = "import sys, yalgaar_receiver.dedupe; print('redis' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "False"
