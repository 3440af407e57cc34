"""The tracker against a small reference model, over random binds, unbinds, resends and clock moves.

Two trackers (two receivers, as on two app servers) share one store, and each step goes through
one of them, so the model also checks that a transition is emitted once between the two.

The model states the rules of ``docs/presence.md`` as plainly as possible (who is present, whose
departure is pending until when) and derives the transitions by comparing member sets before and
after each step, instead of deciding them as the stores do. Hypothesis looks for a sequence where
the two disagree: in the transitions a step emits, in their order, or in the state read back.
"""

from __future__ import annotations

import collections
import typing as t
from dataclasses import dataclass, field

import hypothesis.strategies as st
import pytest
import redis
from hypothesis import HealthCheck, settings
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from yalgaar_receiver import Receiver
from yalgaar_receiver.presence import (
    MemoryPresenceStore,
    PresenceStore,
    PresenceTracker,
    RedisPresenceStore,
)

from ..presence_kit import (
    JOINED,
    KEY,
    LEFT,
    OCCUPIED,
    VACATED,
    FakeClock,
    Recorder,
    Seen,
    body,
    event,
)
from ..servers import RedisServer

CHANNELS = ("game-1", "game-2")
UUIDS = ("alice", "bob")
Key = tuple[str, str]


@dataclass
class Model:
    """The rules, one dictionary per fact."""

    grace: float
    ttl: float | None
    now: float
    marks: dict[Key, float] = field(default_factory=dict)
    present: set[Key] = field(default_factory=set)
    leaving: dict[Key, float] = field(default_factory=dict)  # pending departure -> deadline
    expires: dict[Key, float] = field(default_factory=dict)  # member_ttl deadline

    def members(self) -> dict[str, frozenset[str]]:
        found: dict[str, set[str]] = collections.defaultdict(set)
        for channel, uuid in self.present:
            found[channel].add(uuid)
        return {channel: frozenset(uuids) for channel, uuids in found.items()}

    def settle(self) -> None:
        """Every pending departure or expiry whose time has come is a departure."""
        for key in list(self.present):
            deadline = self.leaving.get(key, self.expires.get(key))
            if deadline is not None and deadline <= self.now:
                self.present.discard(key)
                self.leaving.pop(key, None)
                self.expires.pop(key, None)

    def apply(self, action: str, key: Key, stamp: float | None) -> None:
        if stamp is not None and key in self.marks and stamp < self.marks[key]:
            return
        if stamp is not None:
            self.marks[key] = stamp
        if action == "bind":
            self.present.add(key)
            self.leaving.pop(key, None)
            if self.ttl is not None:
                self.expires[key] = self.now + self.ttl
        elif key in self.present and key not in self.leaving:
            if self.grace > 0:
                self.leaving[key] = self.now + self.grace
                self.expires.pop(key, None)
            else:
                self.present.discard(key)
                self.expires.pop(key, None)


def diff(before: dict[str, frozenset[str]], after: dict[str, frozenset[str]]) -> list[Seen]:
    """The transitions that turn ``before`` into ``after``."""
    seen: list[Seen] = []
    for channel in sorted(set(before) | set(after)):
        old, new = before.get(channel, frozenset()), after.get(channel, frozenset())
        seen += [(JOINED, channel, uuid) for uuid in new - old]
        seen += [(LEFT, channel, uuid) for uuid in old - new]
        if not old and new:
            seen.append((OCCUPIED, channel, ""))
        if old and not new:
            seen.append((VACATED, channel, ""))
    return seen


def check_order(seen: list[Seen]) -> None:
    """Joined before occupied, left before vacated, per channel; the last one decides."""
    for position, (kind, channel, _) in enumerate(seen):
        earlier = [k for k, c, _ in seen[:position] if c == channel]
        if kind == OCCUPIED:
            assert earlier and earlier[-1] == JOINED, seen
        if kind == VACATED:
            assert earlier and earlier[-1] == LEFT, seen


Sent = tuple[str, str, str, int | None]


class PresenceMachine(RuleBasedStateMachine):
    """Sends events through a real receiver to a tracker, and the same ones to the model."""

    sent = Bundle("sent")

    @staticmethod
    def new_store() -> PresenceStore:
        return MemoryPresenceStore()

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        # Two app servers on one store: each event goes through the receiver of one of them.
        self.receivers = (Receiver(client_keys=[KEY]), Receiver(client_keys=[KEY]))
        self.trackers: list[PresenceTracker] = []
        self.recorders: list[Recorder] = []
        self.model = Model(grace=0, ttl=None, now=self.clock.now)

    @initialize(grace=st.sampled_from([0, 3]), ttl=st.sampled_from([None, 10]))
    def start(self, grace: float, ttl: float | None) -> None:
        store = self.new_store()
        for receiver in self.receivers:
            tracker = PresenceTracker(
                receiver,
                store=store,
                grace_seconds=grace,
                member_ttl=ttl,
                watermark_ttl=10**9,  # forgetting is tested on its own; the model never forgets
                sweep_interval=None,
                clock=self.clock,
            )
            self.trackers.append(tracker)
            self.recorders.append(Recorder(tracker))
        self.model = Model(grace=grace, ttl=ttl, now=self.clock.now)

    def teardown(self) -> None:
        for tracker in self.trackers:
            tracker.close()

    def _taken(self) -> list[Seen]:
        return [seen for recorder in self.recorders for seen in recorder.take()]

    def _expect(self, items: t.Sequence[Sent]) -> list[Seen]:
        """The model's transitions for ``items``, applied one after another."""
        expected: list[Seen] = []
        for action, channel, uuid, stamp in items:
            before = self.model.members()
            self.model.settle()
            settled = self.model.members()
            self.model.apply(action, (channel, uuid), stamp)
            expected += diff(before, settled) + diff(settled, self.model.members())
        return expected

    def _compare(self, got: list[Seen], expected: list[Seen]) -> None:
        assert collections.Counter(got) == collections.Counter(expected), (got, expected)
        check_order(got)

    def _step(self, item: Sent, via: int) -> None:
        self.receivers[via].emit(event(*item))
        self._compare(self._taken(), self._expect([item]))

    @rule(
        target=sent,
        action=st.sampled_from(["bind", "unbind"]),
        channel=st.sampled_from(CHANNELS),
        uuid=st.sampled_from(UUIDS),
        stamp=st.none() | st.integers(min_value=100, max_value=104),
        via=st.sampled_from([0, 1]),
    )
    def send(self, action: str, channel: str, uuid: str, stamp: int | None, via: int) -> Sent:
        item = (action, channel, uuid, stamp)
        self._step(item, via)
        return item

    @rule(item=sent, via=st.sampled_from([0, 1]))
    def resend(self, item: Sent, via: int) -> None:
        """A duplicate, and since other events came in between, a late (reordered) one."""
        self._step(item, via)

    @rule(items=st.lists(sent, min_size=2, max_size=5), via=st.sampled_from([0, 1]))
    def batch(self, items: list[Sent], via: int) -> None:
        """Earlier events again, in any order, as one webhook body through ``handle``."""
        outcome = self.receivers[via].handle(body(*items))
        assert len(outcome.accepted) == len(items) and not outcome.failed
        self._compare(self._taken(), self._expect(items))

    @rule(seconds=st.sampled_from([0.5, 1, 2.5, 3, 5, 10, 11]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.model.now = self.clock.now

    @rule(via=st.sampled_from([0, 1]))
    def sweep(self, via: int) -> None:
        if not self.trackers:
            return
        self.trackers[via].sweep()
        before = self.model.members()
        self.model.settle()
        self._compare(self._taken(), diff(before, self.model.members()))

    @invariant()
    def same_state(self) -> None:
        members = self.model.members()
        for tracker in self.trackers:
            assert tracker.channels() == frozenset(members)
            for channel in CHANNELS:
                expected = members.get(channel, frozenset())
                assert tracker.members(channel) == expected
                assert tracker.occupancy(channel) == len(expected)
                leaving = {u for (c, u) in self.model.leaving if c == channel}
                assert tracker.departing(channel) == leaving


SETTINGS = settings(
    max_examples=200,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def test_memory_store_follows_the_model() -> None:
    run_state_machine_as_test(PresenceMachine, settings=SETTINGS)


def test_redis_store_follows_the_model(redis_server: RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.url)
    prefixes = iter(range(10**6))

    class RedisMachine(PresenceMachine):
        @staticmethod
        def new_store() -> PresenceStore:
            return RedisPresenceStore(client, prefix=f"model:{next(prefixes)}:")

    try:
        run_state_machine_as_test(RedisMachine, settings=settings(SETTINGS, max_examples=50))
    finally:
        client.close()


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        ({}, {"c": frozenset({"a"})}, [(JOINED, "c", "a"), (OCCUPIED, "c", "")]),
        ({"c": frozenset({"a", "b"})}, {"c": frozenset({"b"})}, [(LEFT, "c", "a")]),
        ({"c": frozenset({"a"})}, {}, [(LEFT, "c", "a"), (VACATED, "c", "")]),
    ],
)
def test_the_models_diff(
    before: dict[str, frozenset[str]], after: dict[str, frozenset[str]], expected: list[Seen]
) -> None:
    assert diff(before, after) == expected
