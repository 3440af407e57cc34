"""De-duplication by the batch: a request's keys claimed together and settled together.

The round trips are counted on the client's connections (``RoundTripCounter``) against a real
``redis-server``, and the same count with a store that has only the per-event methods shows
that the switch between the two paths is live.
"""

from __future__ import annotations

import threading

import pytest

from yalgaar_receiver import DispatchUnavailableError, Event, Receiver
from yalgaar_receiver.delivery import ThreadPoolDispatcher
from yalgaar_receiver.delivery.dedupe import (
    BatchDedupeStore,
    Claim,
    ClaimState,
    DedupeStore,
    MemoryDedupeStore,
    RedisDedupeStore,
)
from yalgaar_receiver.testing import bind, message, message_envelope, presence_envelope

from ..servers import RedisServer, RoundTripCounter

KEY = "ck-4704a1b2c3d4402f"


class PerEvent:
    """A store of the application's own: the per-event methods of another store, no more."""

    def __init__(self, inner: DedupeStore) -> None:
        self.inner = inner

    def claim(self, key: str) -> Claim:
        return self.inner.claim(key)

    def done(self, claim: Claim) -> bool:
        return self.inner.done(claim)

    def release(self, claim: Claim) -> bool:
        return self.inner.release(claim)


def binds(count: int, channel: str = "room") -> bytes:
    items = [bind(channel, f"member-{n}", at=1_700_000_000 + n) for n in range(count)]
    return presence_envelope(*items, client_key=KEY).to_bytes()


def runs_of(receiver: Receiver) -> list[Event]:
    ran: list[Event] = []
    lock = threading.Lock()

    @receiver.on_presence
    @receiver.on_message
    def noted(event: Event) -> None:
        with lock:
            ran.append(event)

    return ran


def test_a_200_item_envelope_costs_two_round_trips(redis_server: RedisServer) -> None:
    counter = RoundTripCounter()
    client = counter.client(redis_server.url)
    store = RedisDedupeStore(client, prefix="batches:")
    receiver = Receiver(client_keys=[KEY], dedupe=store)
    ran = runs_of(receiver)
    body = binds(200)
    outcome = receiver.handle(body)
    assert len(outcome.accepted) == len(ran) == 200
    assert counter.trips == 2  # one claim pipeline, one settle pipeline (target: at most 3)
    counter.trips = 0
    again = receiver.handle(body)
    assert len(again.duplicates) == 200 and len(ran) == 200
    assert counter.trips == 1  # claimed and found done: nothing to settle
    # The switch is live: the same envelope through the per-event methods.
    counter.trips = 0
    per_event = Receiver(client_keys=[KEY], dedupe=PerEvent(RedisDedupeStore(client)))
    assert not isinstance(per_event.dedupe, BatchDedupeStore)
    runs_of(per_event)
    per_event.handle(body)
    assert counter.trips == 400
    client.close()


def test_each_event_keeps_its_own_outcome() -> None:
    store = MemoryDedupeStore()
    receiver = Receiver(client_keys=[KEY], dedupe=store)
    ran = runs_of(receiver)
    failing = {"member-3", "member-7"}

    @receiver.on_bind
    def sometimes(event: Event) -> None:
        if event.uuid in failing:
            raise RuntimeError("database down for this one")

    body = binds(10)
    first = receiver.handle(body)
    assert sorted(f.event.uuid or "" for f in first.failed) == sorted(failing)
    failing.clear()
    second = receiver.handle(body)
    # Only the two that failed run again; every other one is a duplicate, skipped alone.
    assert sorted(e.uuid or "" for e in ran[10:]) == ["member-3", "member-7"]
    assert len(second.duplicates) == 8 and second.failed == ()


def test_an_event_held_elsewhere_refuses_only_when_reached() -> None:
    store = MemoryDedupeStore()
    receiver = Receiver(client_keys=[KEY], dedupe=store)
    ran = runs_of(receiver)
    items = [message("c", f"u{n}", f"m{n}", at=1_700_000_000 + n) for n in range(4)]
    body = message_envelope(*items, client_key=KEY).to_bytes()
    third = Receiver(client_keys=[KEY]).handle(body).accepted[2]
    held = store.claim(receiver.dedupe_key(third) or "")  # another delivery is running it
    assert held.state is ClaimState.CLAIMED
    with pytest.raises(DispatchUnavailableError):
        receiver.handle(body)
    assert [e.raw["message"] for e in ran] == ["m0", "m1"]
    store.release(held)
    # What ran was settled done, what did not was released: the resend runs the rest only.
    outcome = receiver.handle(body)
    assert [e.raw["message"] for e in ran] == ["m0", "m1", "m2", "m3"]
    assert len(outcome.duplicates) == 2


def test_a_thread_pool_settles_the_batch_when_its_last_event_ran() -> None:
    store = MemoryDedupeStore()
    dispatcher = ThreadPoolDispatcher(max_workers=3)
    receiver = Receiver(client_keys=[KEY], dedupe=store, dispatcher=dispatcher)
    ran = runs_of(receiver)
    body = binds(30)
    try:
        receiver.handle(body)
        assert dispatcher.close(timeout=10)
    finally:
        dispatcher.close(timeout=10)
    assert len(ran) == 30
    again = Receiver(client_keys=[KEY], dedupe=store).handle(body)
    assert len(again.duplicates) == 30  # every claim was marked done, by whichever thread


def test_a_handler_that_stops_the_request_releases_what_did_not_run() -> None:
    store = MemoryDedupeStore()
    receiver = Receiver(client_keys=[KEY], dedupe=store)
    ran = runs_of(receiver)

    @receiver.on_bind
    def interrupted(event: Event) -> None:
        if event.uuid == "member-2":
            raise KeyboardInterrupt  # not isolated: it ends the request

    body = binds(5)
    with pytest.raises(KeyboardInterrupt):
        receiver.handle(body)
    # member-0 and member-1 ran; member-2's first handler ran, then its second stopped it.
    assert [e.uuid for e in ran] == ["member-0", "member-1", "member-2"]
    calm = Receiver(client_keys=[KEY], dedupe=store)
    later = runs_of(calm)
    outcome = calm.handle(body)
    assert [e.uuid for e in later] == ["member-2", "member-3", "member-4"]
    assert len(outcome.duplicates) == 2
