"""Every rule of ``docs/presence.md``, one test or more per rule, against both stores.

Each test that builds its tracker with ``make_tracker`` runs three times: on the embedded store,
on a :class:`RedisPresenceStore` backed by a real ``redis-server`` (one per module, a fresh key
prefix per test), and on one backed by a real 3-master Redis Cluster (one per run), so every
store is held to the same rules.
"""

from __future__ import annotations

import logging
import os
import random
import re
import subprocess
import sys
import threading
import time
import typing as t
from pathlib import Path

import pytest
import redis

from yalgaar_receiver import BindEvent, Event, Receiver, UnbindEvent, signals
from yalgaar_receiver.delivery import ThreadPoolDispatcher
from yalgaar_receiver.exceptions import ConfigurationError
from yalgaar_receiver.presence import (
    BatchPresenceStore,
    ChangeKind,
    MemoryPresenceStore,
    PresenceChange,
    PresenceRules,
    PresenceStore,
    PresenceTracker,
    PresenceUpdate,
    RedisPresenceStore,
)

from ..presence_kit import JOINED, KEY, LEFT, OCCUPIED, VACATED, FakeClock, Recorder, event, post
from ..servers import RedisCluster, RedisServer, start_redis

PAYLOADS = Path(__file__).parents[1] / "payloads"

MakeTracker = t.Callable[..., PresenceTracker]


@pytest.fixture
def receiver() -> Receiver:
    return Receiver(client_keys=[KEY])


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="module")
def module_redis() -> t.Iterator[RedisServer]:
    yield from start_redis()


@pytest.fixture(params=["memory", "redis", "cluster"])
def new_store(request: pytest.FixtureRequest) -> t.Iterator[t.Callable[[], PresenceStore]]:
    """Makes empty stores of one kind; the Redis ones share a server (or a 3-master cluster)
    but not a key prefix."""
    if request.param == "memory":
        yield MemoryPresenceStore
        return
    client: t.Any
    if request.param == "cluster":
        cluster: RedisCluster = request.getfixturevalue("redis_cluster")
        client = cluster.client()
    else:
        server: RedisServer = request.getfixturevalue("module_redis")
        client = redis.Redis.from_url(server.url)
    count = 0

    def make() -> PresenceStore:
        nonlocal count
        count += 1
        return RedisPresenceStore(client, prefix=f"test:{request.node.name}:{count}:")

    yield make
    client.close()


@pytest.fixture
def make_tracker(
    receiver: Receiver, clock: FakeClock, new_store: t.Callable[[], PresenceStore]
) -> t.Iterator[MakeTracker]:
    """Trackers on ``receiver`` with the fake clock and no sweeper thread unless asked; all
    closed at the end of the test."""
    made: list[PresenceTracker] = []

    def make(**options: t.Any) -> PresenceTracker:
        options.setdefault("clock", clock)
        options.setdefault("sweep_interval", None)
        options.setdefault("store", new_store())
        tracker = PresenceTracker(options.pop("receiver", receiver), **options)
        made.append(tracker)
        return tracker

    yield make
    for tracker in made:
        tracker.close()


# -- membership is a set ---------------------------------------------------------------------


def test_first_bind_joins_then_occupies_and_later_binds_only_join(
    receiver: Receiver, make_tracker: MakeTracker
) -> None:
    tracker = make_tracker()
    seen = Recorder(tracker)
    post(receiver, ("bind", "game-42", "alice", 100))
    assert seen.take() == [(JOINED, "game-42", "alice"), (OCCUPIED, "game-42", "")]
    post(receiver, ("bind", "game-42", "bob", 101))
    assert seen.take() == [(JOINED, "game-42", "bob")]
    assert tracker.members("game-42") == frozenset({"alice", "bob"})
    assert tracker.occupancy("game-42") == 2
    assert tracker.channels() == frozenset({"game-42"})


def test_bind_of_a_member_changes_nothing(receiver: Receiver, make_tracker: MakeTracker) -> None:
    tracker = make_tracker()
    seen = Recorder(tracker)
    post(receiver, ("bind", "lobby", "alice", 100))
    seen.take()
    post(receiver, ("bind", "lobby", "alice", 100), ("bind", "lobby", "alice", 105))
    assert seen.take() == []
    assert tracker.members("lobby") == frozenset({"alice"})


def test_unbind_of_an_absent_uuid_changes_nothing(
    receiver: Receiver, make_tracker: MakeTracker
) -> None:
    tracker = make_tracker()
    seen = Recorder(tracker)
    post(receiver, ("bind", "lobby", "alice", 100), ("unbind", "lobby", "bob", 101))
    assert seen.take() == [(JOINED, "lobby", "alice"), (OCCUPIED, "lobby", "")]
    post(receiver, ("unbind", "empty", "carol", 102))
    assert seen.take() == []
    assert tracker.occupancy("empty") == 0
    assert tracker.members("empty") == frozenset()


def test_last_unbind_leaves_then_vacates(receiver: Receiver, make_tracker: MakeTracker) -> None:
    tracker = make_tracker()
    seen = Recorder(tracker)
    post(receiver, ("bind", "c", "a", 100), ("bind", "c", "b", 100))
    seen.take()
    post(receiver, ("unbind", "c", "a", 101))
    assert seen.take() == [(LEFT, "c", "a")]
    post(receiver, ("unbind", "c", "b", 102))
    assert seen.take() == [(LEFT, "c", "b"), (VACATED, "c", "")]
    assert tracker.channels() == frozenset()
    # A channel can be occupied again after it was vacated.
    post(receiver, ("bind", "c", "a", 103))
    assert seen.take() == [(JOINED, "c", "a"), (OCCUPIED, "c", "")]


def test_channels_are_independent(receiver: Receiver, make_tracker: MakeTracker) -> None:
    tracker = make_tracker()
    seen = Recorder(tracker)
    post(receiver, ("bind", "a", "u", 100), ("bind", "b", "u", 100), ("unbind", "a", "u", 101))
    assert seen.take() == [
        (JOINED, "a", "u"),
        (OCCUPIED, "a", ""),
        (JOINED, "b", "u"),
        (OCCUPIED, "b", ""),
        (LEFT, "a", "u"),
        (VACATED, "a", ""),
    ]
    assert tracker.channels() == frozenset({"b"})


# -- order guard ------------------------------------------------------------------------------


def test_late_bind_after_unbind_does_not_resurrect(
    receiver: Receiver, make_tracker: MakeTracker
) -> None:
    tracker = make_tracker()
    seen = Recorder(tracker)
    post(receiver, ("bind", "c", "alice", 100), ("unbind", "c", "alice", 120))
    seen.take()
    post(receiver, ("bind", "c", "alice", 110))  # sent before the unbind, arrived after it
    assert seen.take() == []
    assert tracker.members("c") == frozenset()


def test_an_unbind_that_overtook_its_bind_is_remembered(
    receiver: Receiver, make_tracker: MakeTracker
) -> None:
    # The real payload: alice's unbind (…620) arrives before her bind (…600), and bob's bind is
    # sent twice. The unbind of an absent uuid changes nothing but still sets the watermark.
    tracker = make_tracker()
    seen = Recorder(tracker)
    outcome = receiver.handle((PAYLOADS / "presence_out_of_order.json").read_bytes())
    assert len(outcome.accepted) == 4 and not outcome.failed
    assert seen.take() == [(JOINED, "game-42", "bob"), (OCCUPIED, "game-42", "")]
    assert tracker.members("game-42") == frozenset({"bob"})


def test_an_older_unbind_does_not_remove_a_newer_bind(
    receiver: Receiver, make_tracker: MakeTracker
) -> None:
    tracker = make_tracker()
    seen = Recorder(tracker)
    post(receiver, ("bind", "c", "a", 100), ("unbind", "c", "a", 110), ("bind", "c", "a", 120))
    seen.take()
    post(receiver, ("unbind", "c", "a", 110))  # a resend of the old unbind
    assert seen.take() == []
    assert tracker.members("c") == frozenset({"a"})


def test_equal_timestamps_apply_in_arrival_order(
    receiver: Receiver, make_tracker: MakeTracker
) -> None:
    # Yalgaar's timestamps have one-second resolution: a bind and an unbind in the same second
    # are both real, and arrival order is the only order there is.
    tracker = make_tracker()
    seen = Recorder(tracker)
    post(receiver, ("bind", "c", "a", 100), ("unbind", "c", "a", 100))
    assert seen.take() == [
        (JOINED, "c", "a"),
        (OCCUPIED, "c", ""),
        (LEFT, "c", "a"),
        (VACATED, "c", ""),
    ]
    post(receiver, ("bind", "c", "a", 100))
    assert tracker.members("c") == frozenset({"a"})


def test_the_guard_is_per_channel_and_uuid(receiver: Receiver, make_tracker: MakeTracker) -> None:
    tracker = make_tracker()
    post(receiver, ("unbind", "c", "a", 200))
    post(receiver, ("bind", "c", "b", 100), ("bind", "d", "a", 100), ("bind", "c", "a", 100))
    assert tracker.members("c") == frozenset({"b"})
    assert tracker.members("d") == frozenset({"a"})


def test_events_without_timestamp_apply_in_arrival_order_and_keep_the_watermark(
    receiver: Receiver, make_tracker: MakeTracker
) -> None:
    tracker = make_tracker()
    seen = Recorder(tracker)
    post(receiver, ("bind", "c", "a", 200))
    post(receiver, ("unbind", "c", "a", None))  # always applies
    assert tracker.members("c") == frozenset()
    post(receiver, ("bind", "c", "a", 150))  # still older than the watermark of 200: refused
    assert tracker.members("c") == frozenset()
    post(receiver, ("bind", "c", "a", None))  # always applies
    assert tracker.members("c") == frozenset({"a"})
    post(receiver, ("unbind", "c", "a", 200))  # not older than 200: applies
    assert tracker.members("c") == frozenset()
    assert [kind for kind, _, _ in seen.take()] == [
        *(JOINED, OCCUPIED, LEFT, VACATED),
        *(JOINED, OCCUPIED, LEFT, VACATED),
    ]


def test_an_untimestamped_event_does_not_shield_a_member_from_older_events(
    receiver: Receiver, make_tracker: MakeTracker
) -> None:
    tracker = make_tracker()
    post(receiver, ("bind", "c", "a", None))
    post(receiver, ("unbind", "c", "a", 50))  # no watermark yet: any timestamp applies
    assert tracker.members("c") == frozenset()


def test_a_watermark_is_forgotten_after_watermark_ttl(
    receiver: Receiver, clock: FakeClock, make_tracker: MakeTracker
) -> None:
    tracker = make_tracker(watermark_ttl=60)
    post(receiver, ("unbind", "c", "a", 200))
    clock.advance(59)
    post(receiver, ("bind", "c", "a", 100))
    assert tracker.members("c") == frozenset()
    clock.advance(2)
    post(receiver, ("bind", "c", "a", 100))  # 61 s later the unbind is forgotten
    assert tracker.members("c") == frozenset({"a"})


# -- flap suppression -------------------------------------------------------------------------


def test_unbind_then_bind_within_grace_emits_nothing(
    receiver: Receiver, clock: FakeClock, make_tracker: MakeTracker
) -> None:
    tracker = make_tracker(grace_seconds=3)
    seen = Recorder(tracker)
    post(receiver, ("bind", "c", "a", 100))
    seen.take()
    post(receiver, ("unbind", "c", "a", 101))
    assert tracker.members("c") == frozenset({"a"})  # still a member while pending
    assert tracker.occupancy("c") == 1
    assert tracker.departing("c") == frozenset({"a"})
    clock.advance(2.9)
    post(receiver, ("bind", "c", "a", 103))
    assert tracker.departing("c") == frozenset()
    clock.advance(10)
    assert tracker.sweep() == ()
    assert seen.take() == []
    assert tracker.members("c") == frozenset({"a"})


def test_departure_is_confirmed_once_when_grace_passes(
    receiver: Receiver, clock: FakeClock, make_tracker: MakeTracker
) -> None:
    tracker = make_tracker(grace_seconds=3)
    seen = Recorder(tracker)
    post(receiver, ("bind", "c", "a", 100), ("bind", "c", "b", 100))
    seen.take()
    post(receiver, ("unbind", "c", "a", 101), ("unbind", "c", "b", 101))
    clock.advance(2.999)
    assert tracker.sweep() == ()
    assert tracker.departing("c") == frozenset({"a", "b"})
    clock.advance(0.001)
    changes = tracker.sweep()
    assert [(c.kind, c.uuid) for c in changes] == [
        (ChangeKind.MEMBER_LEFT, "a"),
        (ChangeKind.MEMBER_LEFT, "b"),
        (ChangeKind.CHANNEL_VACATED, "b"),
    ]
    assert seen.take() == [(LEFT, "c", "a"), (LEFT, "c", "b"), (VACATED, "c", "")]
    assert tracker.sweep() == ()
    assert seen.take() == []
    assert tracker.channels() == frozenset()
    assert tracker.departing("c") == frozenset()


def test_the_next_event_confirms_due_departures_first(
    receiver: Receiver, clock: FakeClock, make_tracker: MakeTracker
) -> None:
    tracker = make_tracker(grace_seconds=3)
    seen = Recorder(tracker)
    post(receiver, ("bind", "c", "a", 100), ("unbind", "c", "a", 101))
    seen.take()
    clock.advance(5)
    # No sweep ran; the bind comes after the deadline, so it is a new join, not a cancellation.
    post(receiver, ("bind", "c", "a", 106))
    assert seen.take() == [
        (LEFT, "c", "a"),
        (VACATED, "c", ""),
        (JOINED, "c", "a"),
        (OCCUPIED, "c", ""),
    ]


def test_a_stale_bind_does_not_cancel_a_pending_departure(
    receiver: Receiver, clock: FakeClock, make_tracker: MakeTracker
) -> None:
    tracker = make_tracker(grace_seconds=3)
    seen = Recorder(tracker)
    post(receiver, ("bind", "c", "a", 100), ("unbind", "c", "a", 110))
    seen.take()
    post(receiver, ("bind", "c", "a", 105))  # older than the unbind
    clock.advance(3)
    tracker.sweep()
    assert seen.take() == [(LEFT, "c", "a"), (VACATED, "c", "")]


def test_a_second_unbind_does_not_extend_the_grace_time(
    receiver: Receiver, clock: FakeClock, make_tracker: MakeTracker
) -> None:
    tracker = make_tracker(grace_seconds=3)
    seen = Recorder(tracker)
    post(receiver, ("bind", "c", "a", 100), ("unbind", "c", "a", 101))
    seen.take()
    clock.advance(2)
    post(receiver, ("unbind", "c", "a", 103))
    clock.advance(1)
    tracker.sweep()
    assert seen.take() == [(LEFT, "c", "a"), (VACATED, "c", "")]


def test_the_sweeper_thread_confirms_departures_without_further_events(
    receiver: Receiver, make_tracker: MakeTracker, clock: FakeClock
) -> None:
    # The real thread with the test's clock: the departure is pending until the test moves
    # the clock past the grace time, however slow the machine is.
    tracker = make_tracker(grace_seconds=0.2, sweep_interval=5.0)
    left = threading.Event()
    tracker.on_channel_vacated(lambda channel: left.set())
    post(receiver, ("bind", "c", "a", None), ("unbind", "c", "a", None))
    assert tracker.members("c") == frozenset({"a"})
    assert not left.is_set()
    clock.advance(0.2)
    # The sweeper sleeps at most until the deadline it was woken with by the unbind (0.2 s of
    # the real time it waits on), not for sweep_interval.
    assert left.wait(timeout=4.0), "the departure was never confirmed"
    assert tracker.members("c") == frozenset()


def test_close_stops_the_sweeper_and_stops_listening(
    receiver: Receiver, make_tracker: MakeTracker
) -> None:
    tracker = make_tracker(grace_seconds=1, clock=time.time, sweep_interval=0.05)
    sweepers = [t for t in threading.enumerate() if t.name == "yalgaar-presence-sweeper"]
    assert sweepers
    tracker.close()
    tracker.close()  # twice is harmless
    assert not any(t.is_alive() for t in sweepers)
    post(receiver, ("bind", "c", "a", 100))
    assert tracker.members("c") == frozenset()


def test_no_sweeper_thread_without_deadlines(make_tracker: MakeTracker) -> None:
    before = sum(t.name == "yalgaar-presence-sweeper" for t in threading.enumerate())
    make_tracker(sweep_interval=1.0)
    after = sum(t.name == "yalgaar-presence-sweeper" for t in threading.enumerate())
    assert after == before


# -- member_ttl -------------------------------------------------------------------------------


def test_members_expire_after_member_ttl_without_a_bind(
    receiver: Receiver, clock: FakeClock, make_tracker: MakeTracker
) -> None:
    tracker = make_tracker(member_ttl=60)
    seen = Recorder(tracker)
    post(receiver, ("bind", "c", "a", 100), ("bind", "c", "b", 100))
    seen.take()
    clock.advance(30)
    post(receiver, ("bind", "c", "a", 130))  # a repeated bind refreshes the member silently
    assert seen.take() == []
    clock.advance(30)
    tracker.sweep()
    assert seen.take() == [(LEFT, "c", "b")]
    clock.advance(30)
    tracker.sweep()
    assert seen.take() == [(LEFT, "c", "a"), (VACATED, "c", "")]


def test_an_expired_member_keeps_its_watermark(
    receiver: Receiver, clock: FakeClock, make_tracker: MakeTracker
) -> None:
    tracker = make_tracker(member_ttl=60)
    post(receiver, ("bind", "c", "a", 200))
    clock.advance(61)
    tracker.sweep()
    post(receiver, ("bind", "c", "a", 150))  # a late resend of an old bind
    assert tracker.members("c") == frozenset()


def test_a_stale_bind_does_not_refresh_member_ttl(
    receiver: Receiver, clock: FakeClock, make_tracker: MakeTracker
) -> None:
    tracker = make_tracker(member_ttl=60)
    post(receiver, ("bind", "c", "a", 200))
    clock.advance(50)
    post(receiver, ("bind", "c", "a", 150))
    clock.advance(10)
    tracker.sweep()
    assert tracker.members("c") == frozenset()


# -- handlers, filters, signals ----------------------------------------------------------------


def test_filters_follow_the_receivers_rules(receiver: Receiver, make_tracker: MakeTracker) -> None:
    tracker = make_tracker()
    got: list[tuple[str, ...]] = []

    @tracker.on_member_joined(channel="game-*")
    def glob(channel: str, uuid: str) -> None:
        got.append(("glob", channel, uuid))

    @tracker.on_member_joined(uuid=re.compile(r"^bot-"))
    def regex(channel: str, uuid: str) -> None:
        got.append(("regex", channel, uuid))

    @tracker.on_channel_occupied(channel=lambda name: name.endswith("-7"))
    def predicate(channel: str) -> None:
        got.append(("predicate", channel))

    @tracker.on_channel_occupied(channel="lobby")
    def exact(channel: str) -> None:
        got.append(("exact", channel))

    @tracker.on_channel_occupied(uuid="carol")  # the member whose join occupied the channel
    def cause(channel: str) -> None:
        got.append(("cause", channel))

    assert glob.__name__ == "glob"  # returned unchanged
    post(
        receiver,
        ("bind", "game-7", "alice", 1),
        ("bind", "lobby", "bot-1", 1),
        ("bind", "lobby-2", "carol", 1),
    )
    assert got == [
        ("glob", "game-7", "alice"),
        ("predicate", "game-7"),
        ("regex", "lobby", "bot-1"),
        ("exact", "lobby"),
        ("cause", "lobby-2"),
    ]
    with pytest.raises(TypeError, match="channel filter"):
        tracker.on_member_left(channel=42)  # type: ignore[call-overload]


def test_a_failing_handler_breaks_neither_the_others_nor_the_state(
    receiver: Receiver, make_tracker: MakeTracker, caplog: pytest.LogCaptureFixture
) -> None:
    tracker = make_tracker()
    calls: list[str] = []
    reported: list[tuple[object, object, BaseException]] = []

    @tracker.on_member_joined
    def broken(channel: str, uuid: str) -> None:
        raise RuntimeError("boom")

    @tracker.on_member_joined
    def fine(channel: str, uuid: str) -> None:
        calls.append(uuid)

    def on_failure(
        sender: object, *, change: object, handler: object, error: BaseException
    ) -> None:
        reported.append((sender, change, error))

    with signals.presence_handler_failed.connected_to(on_failure, sender=tracker):
        with caplog.at_level(logging.ERROR, logger="yalgaar_receiver.presence"):
            outcome = receiver.handle(
                b'{"items":{"source":"Presence","clientKey":"%s","data":[{"channel":"c",'
                b'"uuid":"a","timestamp":"1","action":"bind"}]}}' % KEY.encode()
            )
    # The webhook succeeds: resending would not re-run the handler (the bind is a duplicate).
    assert outcome.failed == ()
    assert calls == ["a"]
    assert tracker.members("c") == frozenset({"a"})
    assert [(s, e) for s, e, _ in reported] == [
        (tracker, PresenceChange(kind=ChangeKind.MEMBER_JOINED, channel="c", uuid="a"))
    ]
    assert str(reported[0][2]) == "boom"
    assert "broken" in caplog.text and "boom" in caplog.text


def test_signals_carry_the_tracker_as_sender(receiver: Receiver, make_tracker: MakeTracker) -> None:
    tracker = make_tracker()
    other = make_tracker(receiver=Receiver(client_keys=[KEY]))
    got: list[tuple[str, object, dict[str, t.Any]]] = []

    def recorder(name: str) -> t.Callable[..., None]:
        def record(sender: object, **kwargs: t.Any) -> None:
            got.append((name, sender, kwargs))

        return record

    joined, occupied = recorder("joined"), recorder("occupied")
    left, vacated = recorder("left"), recorder("vacated")
    with (
        signals.member_joined.connected_to(joined, sender=tracker),
        signals.channel_occupied.connected_to(occupied, sender=tracker),
        signals.member_left.connected_to(left, sender=tracker),
        signals.channel_vacated.connected_to(vacated),
    ):
        post(receiver, ("bind", "c", "a", 1), ("unbind", "c", "a", 2))
        post(other.receiver, ("bind", "x", "b", 1))
    assert got == [
        ("joined", tracker, {"channel": "c", "uuid": "a"}),
        ("occupied", tracker, {"channel": "c"}),
        ("left", tracker, {"channel": "c", "uuid": "a"}),
        ("vacated", tracker, {"channel": "c"}),
    ]
    assert other.members("x") == frozenset({"b"}) and tracker.members("x") == frozenset()


def test_raw_handlers_receive_exactly_what_they_would_without_a_tracker(
    receiver: Receiver, make_tracker: MakeTracker
) -> None:
    items = [("bind", "c", "a", 100), ("bind", "c", "a", 100), ("unbind", "c", "a", 90)]
    raw: list[Event] = []
    receiver.on_presence(raw.append)
    post(receiver, *items)
    without = list(raw)
    raw.clear()
    make_tracker(grace_seconds=3)
    post(receiver, *items)
    assert raw == without and len(raw) == 3


def test_events_without_uuid_and_unknown_actions_are_not_tracked(
    receiver: Receiver, make_tracker: MakeTracker
) -> None:
    tracker = make_tracker()
    seen = Recorder(tracker)
    outcome = receiver.handle(
        b'{"items":{"source":"Presence","clientKey":"%s","data":['
        b'{"channel":"c","timestamp":"1","action":"bind"},'
        b'{"channel":"c","uuid":"a","timestamp":"1","action":"kick"}]}}' % KEY.encode()
    )
    assert len(outcome.accepted) == 2 and not outcome.failed
    assert seen.take() == [] and tracker.channels() == frozenset()


def test_a_channel_that_is_not_text_is_skipped_not_failed(
    receiver: Receiver, make_tracker: MakeTracker, caplog: pytest.LogCaptureFixture
) -> None:
    tracker = make_tracker()
    raw: list[Event] = []
    receiver.on_bind(raw.append)
    # Over the wire the parser rejects such an item before any handler (docs/security.md,
    # "Hostile input"); the tracker's own guard is for events built in code, as here.
    bad = BindEvent(channel="c\ud800", uuid="a", timestamp=None)
    good = BindEvent(channel="c", uuid="a", timestamp=None)
    with caplog.at_level(logging.WARNING, logger="yalgaar_receiver.presence"):
        failures = receiver.emit(bad) + receiver.emit(good)
    assert failures == () and len(raw) == 2  # the raw handlers got both
    assert tracker.channels() == frozenset({"c"})
    assert "not text" in caplog.text
    outcome = receiver.handle(
        b'{"items":{"source":"Presence","clientKey":"%s","data":['
        b'{"channel":"c\\ud800","uuid":"a","action":"bind"}]}}' % KEY.encode()
    )
    assert len(outcome.rejected) == 1 and outcome.failed == ()


@pytest.mark.parametrize("workers", [1, 3])
def test_events_dispatched_on_worker_threads_are_applied(
    make_tracker: MakeTracker, workers: int
) -> None:
    # With several workers the events of one body run in parallel and in any order; distinct
    # uuids make the end state independent of that order.
    dispatcher = ThreadPoolDispatcher(max_workers=workers)
    receiver = Receiver(client_keys=[KEY], dispatcher=dispatcher)
    tracker = make_tracker(receiver=receiver)
    threads: list[str] = []
    tracker.on_member_joined(lambda channel, uuid: threads.append(threading.current_thread().name))
    try:
        post(receiver, *[("bind", "c", f"u{n}", 1) for n in range(6)])
    finally:
        assert dispatcher.close(timeout=30)
    assert tracker.members("c") == frozenset(f"u{n}" for n in range(6))
    assert len(threads) == 6 and threading.current_thread().name not in threads


def test_concurrent_request_threads_produce_each_transition_once(
    receiver: Receiver, make_tracker: MakeTracker
) -> None:
    tracker = make_tracker()
    seen = Recorder(tracker)
    barrier = threading.Barrier(4)

    def client(n: int) -> None:
        barrier.wait(timeout=10)
        for round_ in range(25):
            post(receiver, ("bind", "room", f"u{n}", None))
            post(receiver, ("unbind", "room", f"u{n}", None))
            del round_

    threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    kinds = [kind for kind, _, _ in seen.take()]
    assert kinds.count(JOINED) == kinds.count(LEFT) == 100
    assert kinds.count(OCCUPIED) == kinds.count(VACATED) >= 1
    # Delivered in the order the store made them: occupancy never goes below 0 or above 4.
    occupancy = 0
    for kind in kinds:
        occupancy += {JOINED: 1, LEFT: -1}.get(kind, 0)
        assert 0 <= occupancy <= 4
        if kind == OCCUPIED:
            assert occupancy == 1
        if kind == VACATED:
            assert occupancy == 0
    assert tracker.channels() == frozenset()


# -- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("grace_seconds", -1),
        ("member_ttl", 0),
        ("watermark_ttl", 0),
        ("sweep_interval", 0),
    ],
)
def test_bad_settings_are_refused(receiver: Receiver, option: str, value: float) -> None:
    with pytest.raises(ConfigurationError, match=option):
        options: dict[str, t.Any] = {option: value}
        PresenceTracker(receiver, **options)
    # Nothing stays connected after a refusal.
    assert not signals.bind.receivers


def test_the_memory_store_is_a_presence_store() -> None:
    assert isinstance(MemoryPresenceStore(), PresenceStore)
    assert repr(MemoryPresenceStore()) == "<MemoryPresenceStore channels=0>"


def test_unbind_events_are_the_receivers(receiver: Receiver, make_tracker: MakeTracker) -> None:
    # ``receiver.emit`` (a replay, a worker) reaches the tracker as well as ``handle`` does.
    tracker = make_tracker()
    receiver.emit(event("bind", "c", "a", 5))
    assert tracker.members("c") == frozenset({"a"})
    failures = receiver.emit(event("unbind", "c", "a", 6))
    assert failures == () and isinstance(event("unbind", "c", "a"), UnbindEvent)
    assert tracker.members("c") == frozenset()


# The child of a fork inherits no thread: without a sweeper of its own, a departure would wait
# for the next event. The script forks and the child must see the departure confirmed alone.
FORK_SCRIPT = """
import os, sys, threading, warnings
warnings.simplefilter("ignore", DeprecationWarning)  # Python 3.12 warns on fork with threads
from yalgaar_receiver import BindEvent, Receiver, UnbindEvent
from yalgaar_receiver.presence import PresenceTracker
receiver = Receiver(allow_unauthenticated=True)
tracker = PresenceTracker(receiver, grace_seconds=0.1, sweep_interval=0.05)
left = threading.Event()
tracker.on_member_left(lambda channel, uuid: left.set())
pid = os.fork()
if pid == 0:
    receiver.emit(BindEvent(channel="c", uuid="a", timestamp=None))
    receiver.emit(UnbindEvent(channel="c", uuid="a", timestamp=None))
    os._exit(0 if left.wait(5) else 3)
_, status = os.waitpid(pid, 0)
tracker.close()
sys.exit(os.waitstatus_to_exitcode(status))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="this platform cannot fork")
def test_a_forked_child_gets_a_sweeper_of_its_own() -> None:
    result = subprocess.run(
        [sys.executable, "-c", FORK_SCRIPT], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, (result.returncode, result.stderr)


# -- a batch is its updates applied in order -------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_applying_a_batch_gives_what_applying_each_update_gives(
    new_store: t.Callable[[], PresenceStore], seed: int
) -> None:
    """``apply_many`` against many ``apply`` calls on a fresh store of the same kind: the same
    transitions, in the same order, and the same state, with the grace time and out-of-order,
    repeated and untimestamped updates that a real sender produces."""
    rng = random.Random(seed)
    rules = PresenceRules(grace_seconds=5.0, member_ttl=60.0)
    batched, single = new_store(), new_store()
    assert isinstance(batched, BatchPresenceStore)
    now = 1_700_000_000.0
    for _ in range(4):  # four envelopes, with time passing in between
        updates = [
            PresenceUpdate(
                action=rng.choice(["bind", "bind", "unbind"]),
                channel=f"c{rng.randrange(3)}",
                uuid=f"u{rng.randrange(5)}",
                timestamp=rng.choice([None, float(rng.randrange(1_000, 1_040))]),
            )
            for _ in range(40)
        ]
        expected = [change for u in updates for change in single.apply(u, now, rules)]
        assert batched.apply_many(updates, now, rules) == expected
        for channel in ("c0", "c1", "c2"):
            assert batched.members(channel) == single.members(channel)
            assert batched.departing(channel) == single.departing(channel)
        now += rng.choice([1.0, 6.0, 61.0])
    assert batched.sweep(now + 3600, rules) == single.sweep(now + 3600, rules)
