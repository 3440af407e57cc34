"""Presence by the batch: the binds and unbinds of one request applied in one store call.

The Redis round trips are counted on the presence store's own client (``RoundTripCounter``)
against a real ``redis-server``; the same envelope through a store without ``apply_many`` shows
that the switch between the two paths is live.
"""

from __future__ import annotations

import typing as t

import pytest

from yalgaar_receiver import Event, HandlerFailure, Receiver, signals
from yalgaar_receiver.delivery import MemoryDedupeStore, RedisDedupeStore, ThreadPoolDispatcher
from yalgaar_receiver.presence import (
    BatchPresenceStore,
    MemoryPresenceStore,
    PresenceChange,
    PresenceRules,
    PresenceStore,
    PresenceTracker,
    PresenceUpdate,
    RedisPresenceStore,
)
from yalgaar_receiver.testing import message, message_envelope

from ..delivery.test_batches import PerEvent
from ..presence_kit import JOINED, KEY, Recorder, body, event
from ..servers import RedisServer, RoundTripCounter

Item = tuple[str, str, str, str | int | None]


class OneByOne:
    """A store of the application's own: the per-event methods of another store, no
    ``apply_many``."""

    def __init__(self, inner: PresenceStore) -> None:
        self.inner = inner

    def apply(
        self, update: PresenceUpdate, now: float, rules: PresenceRules
    ) -> list[PresenceChange]:
        return self.inner.apply(update, now, rules)

    def __getattr__(self, name: str) -> t.Any:
        if name == "apply_many":
            raise AttributeError(name)
        return getattr(self.inner, name)


class FailingOnce(MemoryPresenceStore):
    """A memory store whose first ``apply_many`` fails, as Redis does when it is down."""

    def __init__(self) -> None:
        super().__init__()
        self.failures_left = 1

    def apply_many(
        self, updates: t.Sequence[PresenceUpdate], now: float, rules: PresenceRules
    ) -> list[PresenceChange]:
        if self.failures_left:
            self.failures_left -= 1
            raise ConnectionError("the presence store is down")
        return super().apply_many(updates, now, rules)


def binds(count: int, channel: str) -> list[Item]:
    return [("bind", channel, f"member-{n}", 1_700_000_000 + n) for n in range(count)]


def test_a_full_envelope_costs_at_most_two_round_trips(redis_server: RedisServer) -> None:
    counter = RoundTripCounter()
    client = counter.client(redis_server.url)
    dedupe_counter = RoundTripCounter()
    dedupe_client = dedupe_counter.client(redis_server.url)
    receiver = Receiver(client_keys=[KEY], dedupe=RedisDedupeStore(dedupe_client))
    store = RedisPresenceStore(client, prefix="batches:")
    with PresenceTracker(receiver, store=store, sweep_interval=None) as tracker:
        seen = Recorder(tracker)
        receiver.handle(body(("bind", "warm-up", "w", 1)))  # loads the script once
        seen.take()
        counter.trips = dedupe_counter.trips = 0

        outcome = receiver.handle(body(*binds(199, "room")))
        assert len(outcome.accepted) == 199 and not outcome.failed
        assert counter.trips == 1  # one script for the whole envelope (target: at most 2)
        assert dedupe_counter.trips == 2
        assert len(seen.take()) == 200  # 199 joins, 1 occupancy
        assert tracker.occupancy("room") == 199

        counter.trips = 0
        full = body(*binds(200, "hall"))
        receiver.handle(full)
        assert counter.trips == 2  # the script, and the stale mark of a full envelope
        assert tracker.stale_since is not None and tracker.occupancy("hall") == 200

        counter.trips = 0
        again = receiver.handle(full)  # the sender's resend: every event is a duplicate
        assert len(again.duplicates) == 200
        assert counter.trips == 1  # the stale mark only: a duplicate applies nothing
        assert seen.take()[:1] == [(JOINED, "hall", "member-0")]  # those of the first copy

    # The switch is live: the same envelope through a store that applies one update a call.
    one_by_one = OneByOne(RedisPresenceStore(client, prefix="one-by-one:"))
    assert not isinstance(one_by_one, BatchPresenceStore)
    receiver = Receiver(client_keys=[KEY])
    with PresenceTracker(receiver, store=one_by_one, sweep_interval=None) as tracker:
        seen = Recorder(tracker)
        counter.trips = 0
        receiver.handle(body(*binds(199, "room")))
        assert counter.trips == 199  # one script call per bind
        assert len(seen.take()) == 200 and tracker.occupancy("room") == 199
    client.close()
    dedupe_client.close()


def test_more_updates_than_apply_limit_take_a_script_per_share(redis_server: RedisServer) -> None:
    counter = RoundTripCounter()
    client = counter.client(redis_server.url)
    receiver = Receiver(client_keys=[KEY])
    store = RedisPresenceStore(client, prefix="limit:", apply_limit=50)
    with PresenceTracker(receiver, store=store, sweep_interval=None) as tracker:
        seen = Recorder(tracker)
        receiver.handle(body(("bind", "warm-up", "w", 1)))
        seen.take()
        counter.trips = 0
        receiver.handle(body(*binds(199, "room")))
        assert counter.trips == 4  # 50 + 50 + 50 + 49
        assert len(seen.take()) == 200 and tracker.occupancy("room") == 199
    client.close()


def test_an_envelope_task_applies_its_presence_in_one_script(redis_server: RedisServer) -> None:
    # What CeleryDispatcher(mode="envelope") runs on the worker.
    counter = RoundTripCounter()
    client = counter.client(redis_server.url)
    receiver = Receiver(client_keys=[KEY])
    store = RedisPresenceStore(client, prefix="tasks:")
    with PresenceTracker(receiver, store=store, sweep_interval=None) as tracker:
        receiver.emit(event("bind", "warm-up", "w", 1))
        counter.trips = 0
        events = [event("bind", "room", f"u{n}", 1_700_000_000 + n) for n in range(50)]
        results = receiver.emit_batch([*events, event("unbind", "room", "u0", 1_800_000_000)])
        assert results == [()] * 51
        assert counter.trips == 1
        assert tracker.occupancy("room") == 49
    client.close()


def test_transitions_come_once_the_requests_handlers_have_run() -> None:
    receiver = Receiver(client_keys=[KEY])
    order: list[str] = []
    receiver.on_bind(lambda e: order.append(f"bind {e.uuid}"))
    with PresenceTracker(receiver, sweep_interval=None) as tracker:
        tracker.on_member_joined(lambda channel, uuid: order.append(f"joined {uuid}"))
        applied: list[frozenset[str]] = []

        def note(sender: PresenceTracker, *, channels: frozenset[str]) -> None:
            applied.append(channels)

        with signals.presence_applied.connected_to(note, sender=tracker):
            receiver.handle(body(("bind", "a", "x", 1), ("bind", "b", "y", 2)))
            assert order == ["bind x", "bind y", "joined x", "joined y"]
            assert applied == [frozenset({"a", "b"})]  # one store call for the request
            # An event run on its own (a replay, a test) applies its presence at once.
            receiver.emit(event("bind", "c", "z", 3))
            assert order[-1] == "joined z" and tracker.members("c") == {"z"}
            assert applied[-1] == frozenset({"c"})


@pytest.mark.parametrize("batched", [True, False], ids=["batch-store", "per-event-store"])
def test_a_store_failure_fails_the_requests_presence_events_and_a_resend_applies_them(
    batched: bool,
) -> None:
    dedupe = MemoryDedupeStore()
    receiver = Receiver(client_keys=[KEY], dedupe=dedupe if batched else PerEvent(dedupe))
    ran: list[str] = []
    receiver.on_bind(lambda e: ran.append(str(e.uuid)))
    reported: list[HandlerFailure] = []

    def failed(sender: Receiver, *, event: Event, handler: t.Any, error: BaseException) -> None:
        reported.append(HandlerFailure(event=event, handler=handler, error=error))

    store = FailingOnce()
    with (
        PresenceTracker(receiver, store=store, sweep_interval=None) as tracker,
        signals.handler_failed.connected_to(failed, sender=receiver),
    ):
        request = body(("bind", "room", "a", 1), ("bind", "room", "b", 2))
        outcome = receiver.handle(request)
        assert ran == ["a", "b"]  # the handlers ran; the state did not change
        assert [f.event.uuid for f in outcome.failed] == ["a", "b"]
        assert all(isinstance(f.error, ConnectionError) for f in outcome.failed)
        assert [f.event for f in reported] == [f.event for f in outcome.failed]
        assert tracker.members("room") == frozenset()
        # Their claims were released, not marked done: the resend runs them, and applies them.
        resent = receiver.handle(request)
        assert not resent.failed and not resent.duplicates
        assert ran == ["a", "b", "a", "b"]
        assert tracker.members("room") == {"a", "b"}
        assert len(receiver.handle(request).duplicates) == 2


def test_a_store_failure_in_an_envelope_task_fails_only_its_presence_events() -> None:
    # emit_batch() is what a Celery worker runs for mode="envelope": the failures it returns
    # are the events the task retries.
    receiver = Receiver(client_keys=[KEY], dedupe=MemoryDedupeStore())
    with PresenceTracker(receiver, store=FailingOnce(), sweep_interval=None) as tracker:
        [note] = receiver.handle(
            message_envelope(message("room", "a", "hi"), client_key=KEY)
        ).accepted
        events = [event("bind", "room", "a", 1), note, event("unbind", "room", "b", 2)]
        results = receiver.emit_batch(events)
        assert results[1] == ()
        for result in (results[0], results[2]):
            assert isinstance(result, tuple) and len(result) == 1
            assert result[0].handler == tracker.apply_updates
        assert [r for r in receiver.emit_batch(events)] == [(), (), ()]  # the retry applies them
        assert tracker.members("room") == {"a"}


def test_a_thread_pool_applies_each_event_as_it_runs(redis_server: RedisServer) -> None:
    # The pool runs the events after the answer, on its own threads: no unit holds them.
    counter = RoundTripCounter()
    client = counter.client(redis_server.url)
    pool = ThreadPoolDispatcher(max_workers=2)
    receiver = Receiver(client_keys=[KEY], dispatcher=pool)
    store = RedisPresenceStore(client, prefix="pool:")
    with PresenceTracker(receiver, store=store, sweep_interval=None) as tracker:
        receiver.emit(event("bind", "warm-up", "w", 1))
        counter.trips = 0
        receiver.handle(body(*binds(20, "room")))
        assert pool.close(timeout=30)
        assert counter.trips == 20
        assert tracker.occupancy("room") == 20
    client.close()
