"""Two app servers sharing one real ``redis-server``: each transition happens exactly once.

Each "app server" is a receiver, a tracker and a redis client of its own, driven from its own
thread; the Lua scripts are what keeps them from producing a transition twice.
"""

from __future__ import annotations

import collections
import random
import threading
import time
import typing as t

import pytest
import redis

from yalgaar_receiver import Receiver
from yalgaar_receiver.presence import (
    MemoryPresenceStore,
    PresenceStore,
    PresenceTracker,
    RedisPresenceStore,
)

from ..presence_kit import JOINED, KEY, LEFT, OCCUPIED, VACATED, FakeClock, Recorder, body, post
from ..servers import RedisServer

Item = tuple[str, str, str, str | int | None]


class Server:
    """One app server: its own receiver, redis client, tracker and recorder."""

    def __init__(self, url: str, **options: t.Any) -> None:
        self.client = redis.Redis.from_url(url)
        self.receiver = Receiver(client_keys=[KEY])
        store = RedisPresenceStore(self.client, prefix="shared:")
        self.tracker = PresenceTracker(self.receiver, store=store, **options)
        self.seen = Recorder(self.tracker)

    def close(self) -> None:
        self.tracker.close()
        self.client.close()


@pytest.fixture
def two_servers(redis_server: RedisServer) -> t.Iterator[t.Callable[..., tuple[Server, Server]]]:
    made: list[Server] = []

    def make(**options: t.Any) -> tuple[Server, Server]:
        options.setdefault("sweep_interval", None)
        pair = (Server(redis_server.url, **options), Server(redis_server.url, **options))
        made.extend(pair)
        return pair

    yield make
    for server in made:
        server.close()


def run_concurrently(*jobs: t.Callable[[], object]) -> None:
    """Start every job at once on its own thread; re-raise the first error."""
    barrier = threading.Barrier(len(jobs))
    errors: list[BaseException] = []

    def run(job: t.Callable[[], object]) -> None:
        try:
            barrier.wait(timeout=10)
            job()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a job did not finish"
    if errors:
        raise errors[0]


def test_two_servers_binding_one_channel_at_once_occupy_and_vacate_it_once(
    two_servers: t.Callable[..., tuple[Server, Server]],
) -> None:
    a, b = two_servers()
    rounds = 40
    step = threading.Barrier(2)

    def app(server: Server, uuid: str) -> t.Callable[[], None]:
        def job() -> None:
            for n in range(rounds):
                post(server.receiver, ("bind", f"room-{n}", uuid, None))
                step.wait(timeout=10)
                post(server.receiver, ("unbind", f"room-{n}", uuid, None))

        return job

    run_concurrently(app(a, "alice"), app(b, "bob"))
    seen = a.seen.take() + b.seen.take()
    for n in range(rounds):
        kinds = collections.Counter(kind for kind, channel, _ in seen if channel == f"room-{n}")
        assert kinds == {JOINED: 2, LEFT: 2, OCCUPIED: 1, VACATED: 1}, (n, kinds)
    assert a.tracker.channels() == frozenset()


def _history(seed: int) -> list[Item]:
    """Binds, unbinds and duplicates on 3 channels and 6 uuids, timestamps rising per item."""
    rng = random.Random(seed)
    items: list[Item] = []
    for stamp in range(1_521_609_600, 1_521_609_600 + 300):
        action = rng.choice(["bind", "bind", "unbind"])
        item: Item = (action, f"game-{rng.randrange(3)}", f"u{rng.randrange(6)}", stamp)
        items.append(item)
        if rng.random() < 0.2:
            items.append(item)  # the sender's resend
    return items


def _expected(items: t.Sequence[Item]) -> collections.Counter[tuple[str, str, str]]:
    """The transitions of ``items`` applied once, in order, by one tracker on its own."""
    receiver = Receiver(client_keys=[KEY])
    store: PresenceStore = MemoryPresenceStore()
    with PresenceTracker(receiver, store=store, sweep_interval=None) as tracker:
        seen = Recorder(tracker)
        post(receiver, *items)
        return collections.Counter(seen.take())


def test_interleaved_batches_on_two_servers_give_each_transition_exactly_once(
    two_servers: t.Callable[..., tuple[Server, Server]],
) -> None:
    # The sender delivers every batch to both servers (a retry that a load balancer routed
    # elsewhere), and the servers run them at the same time. Timestamps rise along the history,
    # so however the two copies interleave, the second application of each event is a duplicate
    # or stale: the union of both servers' transitions must be the history's transitions, once.
    items = _history(seed=7)
    expected = _expected(items)
    assert expected[JOINED, "game-0", "u0"] >= 1  # the history is not trivial
    a, b = two_servers()
    batches = [items[i : i + 7] for i in range(0, len(items), 7)]

    def app(server: Server) -> t.Callable[[], None]:
        def job() -> None:
            for batch in batches:
                post(server.receiver, *batch)

        return job

    run_concurrently(app(a), app(b))
    got = collections.Counter(a.seen.take() + b.seen.take())
    assert got == expected
    assert a.seen.take() == b.seen.take() == []
    # Both servers read the same state, and it is the history's final state.
    final = {(channel, uuid) for (_, channel, uuid, _) in items}
    for channel, uuid in final:
        assert (uuid in a.tracker.members(channel)) == (uuid in b.tracker.members(channel))
    receiver = Receiver(client_keys=[KEY])
    with PresenceTracker(receiver, sweep_interval=None) as alone:
        post(receiver, *items)
        for channel in ("game-0", "game-1", "game-2"):
            assert a.tracker.members(channel) == alone.members(channel)


def test_due_departures_are_confirmed_once_whoever_sweeps(
    two_servers: t.Callable[..., tuple[Server, Server]],
) -> None:
    clock = FakeClock()
    a, b = two_servers(grace_seconds=5, clock=clock)
    uuids = [f"u{n}" for n in range(60)]
    post(a.receiver, *[("bind", "hall", u, 100) for u in uuids])
    post(b.receiver, *[("unbind", "hall", u, 101) for u in uuids])
    a.seen.take()
    assert a.tracker.occupancy("hall") == 60  # all pending
    clock.advance(5)
    # Both sweep at once, each in batches (sweep_limit 200 > 60, so also one event each).
    run_concurrently(a.tracker.sweep, b.tracker.sweep, a.tracker.sweep, b.tracker.sweep)
    got = collections.Counter(kind for kind, _, _ in a.seen.take() + b.seen.take())
    assert got == {LEFT: 60, VACATED: 1}


def test_sweeper_threads_of_two_servers_confirm_each_departure_once(
    two_servers: t.Callable[..., tuple[Server, Server]],
) -> None:
    a, b = two_servers(grace_seconds=0.2, clock=time.time, sweep_interval=0.05)
    uuids = [f"u{n}" for n in range(20)]
    post(a.receiver, *[("bind", "hall", u, None) for u in uuids])
    post(b.receiver, *[("unbind", "hall", u, None) for u in uuids])
    deadline = time.monotonic() + 10
    while a.tracker.occupancy("hall") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert a.tracker.occupancy("hall") == 0
    time.sleep(0.3)  # room for a wrong second confirmation to show up
    got = collections.Counter(kind for kind, _, _ in a.seen.take() + b.seen.take())
    assert got == {JOINED: 20, OCCUPIED: 1, LEFT: 20, VACATED: 1}


def test_a_small_sweep_limit_still_confirms_everything(redis_server: RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    clock = FakeClock()
    receiver = Receiver(client_keys=[KEY])
    store = RedisPresenceStore(client, prefix="small:", sweep_limit=3)
    with PresenceTracker(
        receiver, store=store, member_ttl=10, clock=clock, sweep_interval=None
    ) as tracker:
        post(receiver, *[("bind", "c", f"u{n}", 1) for n in range(10)])
        assert tracker.occupancy("c") == 10
        assert store.next_deadline() == clock.now + 10
        clock.advance(10)
        assert len(tracker.sweep()) == 11  # 10 departures, 1 vacancy
        # The watermarks stay scheduled to be forgotten, not the members.
        assert store.next_deadline() == clock.now + 3600
        assert tracker.channels() == frozenset()
    client.close()


def test_a_redis_outage_fails_the_request_so_the_sender_retries(
    redis_server: RedisServer,
) -> None:
    client = redis.Redis.from_url(redis_server.url, socket_timeout=2, socket_connect_timeout=2)
    receiver = Receiver(client_keys=[KEY])
    store = RedisPresenceStore(client, prefix="outage:")
    with PresenceTracker(receiver, store=store, sweep_interval=None) as tracker:
        redis_server.stop()
        outcome = receiver.handle(body(("bind", "c", "a", 1)))
        assert len(outcome.failed) == 1
        assert isinstance(outcome.failed[0].error, redis.ConnectionError)
        redis_server.start()
        post(receiver, ("bind", "c", "a", 1))  # the sender's retry
        assert tracker.members("c") == frozenset({"a"})
    client.close()


def test_keys_stay_under_the_prefix(redis_server: RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    receiver = Receiver(client_keys=[KEY])
    store = RedisPresenceStore(client, prefix="app1:")
    with PresenceTracker(receiver, store=store, sweep_interval=None):
        post(receiver, ("bind", "c:1", "a", 1), ("bind", "c:1", "b:2", 1), ("unbind", "x", "y", 5))
    assert store.members("c:1") == frozenset({"a", "b:2"})
    keys = [str(key) for key in client.keys("*")]
    assert keys and all(key.startswith("app1:") for key in keys)
    assert repr(store) == "<RedisPresenceStore prefix='app1:'>"
    client.close()
