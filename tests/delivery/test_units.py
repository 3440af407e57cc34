"""Units of work: a subscriber defers its part of each event and does it once per request.

``PresenceTracker`` is the package's own user of this (``tests/presence/test_presence_batches.py``);
these tests hold the mechanism itself to what ``delivery.dispatch`` promises.
"""

from __future__ import annotations

import threading
import typing as t

from yalgaar_receiver import Event, HandlerFailure, Receiver, signals
from yalgaar_receiver.delivery import MemoryDedupeStore, ThreadPoolDispatcher
from yalgaar_receiver.delivery.dispatch import defer
from yalgaar_receiver.testing import bind, presence_envelope

KEY = "ck-4704a1b2c3d4402f"


class Batcher:
    """A subscriber of the application's own that writes its events in batches."""

    def __init__(self, receiver: Receiver, *, failing: bool = False) -> None:
        self.batches: list[list[str]] = []
        self.deferred: list[bool] = []
        self.threads: set[int] = set()
        self.failing = failing
        signals.bind.connect(self.on_bind, sender=receiver, weak=False)

    def on_bind(self, sender: Receiver, *, event: Event, **extra: t.Any) -> None:
        uuid = str(getattr(event, "uuid", ""))
        deferred = defer(self.write, event, uuid)
        self.deferred.append(deferred)
        if not deferred:
            self.write([(event, uuid)])

    def write(self, items: t.Sequence[tuple[Event, str]]) -> None:
        self.threads.add(threading.get_ident())
        if self.failing:
            raise ConnectionError("the sink is down")
        self.batches.append([uuid for _, uuid in items])

    def close(self) -> None:
        signals.bind.disconnect(self.on_bind)


def body(*uuids: str) -> bytes:
    return presence_envelope(*(bind("room", u, at=1) for u in uuids), client_key=KEY).to_bytes()


def test_without_units_a_subscriber_does_its_work_at_once() -> None:
    receiver = Receiver(client_keys=[KEY])
    batcher = Batcher(receiver)
    receiver.handle(body("a", "b", "c"))
    assert batcher.deferred == [False] * 3
    assert batcher.batches == [["a"], ["b"], ["c"]]
    batcher.close()


def test_with_units_a_request_is_one_batch_and_emit_is_its_own() -> None:
    receiver = Receiver(client_keys=[KEY])
    copy = receiver.with_client_keys([KEY])
    receiver.enable_units()  # after the copy was made: copies follow the receiver they share
    batcher = Batcher(receiver)
    copy.handle(body("a", "b", "c"))
    assert batcher.deferred == [True] * 3
    assert batcher.batches == [["a", "b", "c"]]
    [event] = receiver.handle(body("d")).accepted
    assert receiver.emit(event) == ()
    assert batcher.batches[-2:] == [["d"], ["d"]]
    assert receiver.emit_batch([event, event]) == [(), ()]
    assert batcher.batches[-1] == ["d", "d"]
    batcher.close()


def test_a_failed_batch_fails_each_of_its_events_and_releases_their_claims() -> None:
    receiver = Receiver(client_keys=[KEY], dedupe=MemoryDedupeStore())
    receiver.enable_units()
    batcher = Batcher(receiver, failing=True)
    reported: list[HandlerFailure] = []

    def failed(sender: Receiver, **kwargs: t.Any) -> None:
        reported.append(HandlerFailure(**kwargs))

    with signals.handler_failed.connected_to(failed, sender=receiver):
        outcome = receiver.handle(body("a", "b"))
    assert [failure.handler for failure in outcome.failed] == [batcher.write] * 2
    assert [failure.event for failure in reported] == list(outcome.accepted)
    batcher.failing = False
    again = receiver.handle(body("a", "b"))  # released, so run again, not duplicates
    assert not again.failed and not again.duplicates
    assert batcher.batches == [["a", "b"]]
    batcher.close()


def test_events_on_a_thread_pool_are_outside_the_requests_unit() -> None:
    pool = ThreadPoolDispatcher(max_workers=2)
    receiver = Receiver(client_keys=[KEY], dispatcher=pool)
    receiver.enable_units()
    batcher = Batcher(receiver)
    receiver.handle(body("a", "b", "c"))
    assert pool.close(timeout=10)
    assert batcher.deferred == [False] * 3  # the pool's threads run no unit: written at once
    assert sorted(uuid for batch in batcher.batches for uuid in batch) == ["a", "b", "c"]
    assert threading.get_ident() not in batcher.threads
    batcher.close()
