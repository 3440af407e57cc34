"""The two de-duplication stores keep the same contract: claim, done, release, lease and ttl.

Every contract test runs against :class:`MemoryDedupeStore` (with a clock the test moves),
against :class:`RedisDedupeStore` on a real ``redis-server``, and against one on a real 3-master
Redis Cluster (both with real, short waits); the batch methods are held to the per-event ones.
"""

from __future__ import annotations

import threading
import time
import typing as t
import uuid
from dataclasses import dataclass

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from yalgaar_receiver import ConfigurationError
from yalgaar_receiver.delivery.dedupe import (
    BatchDedupeStore,
    Claim,
    ClaimState,
    DedupeStore,
    MemoryDedupeStore,
    RedisDedupeStore,
)

from ..servers import RedisCluster, RedisServer


def connect(server: RedisServer) -> redis.Redis:
    """A client that fails at once when the server is down, instead of retrying for seconds."""
    return redis.Redis.from_url(
        server.url,
        socket_timeout=2,
        socket_connect_timeout=2,
        retry=Retry(NoBackoff(), 0),
    )


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Kit:
    """How to build a store of one kind and let time pass for it."""

    kind: str
    make: t.Callable[..., DedupeStore]
    wait: t.Callable[[float], None]

    def peer(self, store: DedupeStore, lease: float | None = None) -> DedupeStore:
        """What another caller sees: the same memory store, or a new Redis store on the server.

        :param lease: the peer's lease (Redis only; the memory store's clock stands still
            between waits, so its lease never runs out by accident).
        """
        if isinstance(store, MemoryDedupeStore):
            return store
        assert isinstance(store, RedisDedupeStore)
        return self.make(ttl=store.ttl, lease=store.lease if lease is None else lease)


@pytest.fixture(params=["memory", "redis", "cluster"])
def kit(request: pytest.FixtureRequest) -> t.Iterator[Kit]:
    if request.param == "memory":
        clock = FakeClock()
        yield Kit("memory", lambda **kw: MemoryDedupeStore(timer=clock, **kw), clock.advance)
        return
    client: t.Any
    if request.param == "cluster":
        cluster: RedisCluster = request.getfixturevalue("redis_cluster")
        client = cluster.client()
    else:
        client = connect(request.getfixturevalue("redis_server"))
    # One prefix per test, shared by the stores it builds: they stand for several processes.
    prefix = f"test:{uuid.uuid4().hex}:"
    try:
        make = lambda **kw: RedisDedupeStore(client, prefix=prefix, **kw)  # noqa: E731
        yield Kit(request.param, make, time.sleep)
    finally:
        client.close()


def wait_until_claimed(kit: Kit, store: DedupeStore, key: str, limit: float) -> Claim:
    """Claim ``key`` again and again (bounded) until it is free; return the winning claim."""
    deadline = time.monotonic() + limit
    while True:
        claim = store.claim(key)
        if claim.state is ClaimState.CLAIMED or time.monotonic() > deadline:
            return claim
        kit.wait(0.05)


def test_claim_then_done_makes_a_duplicate(kit: Kit) -> None:
    store = kit.make()
    first = store.claim("k")
    assert first.state is ClaimState.CLAIMED
    assert first.token
    assert store.done(first) is True
    again = store.claim("k")
    assert again.state is ClaimState.DONE
    assert again.token is None
    assert 0 < again.expires_in <= 600


def test_a_claim_blocks_other_callers_until_finished(kit: Kit) -> None:
    store = kit.make(lease=60)
    other = kit.peer(store)
    mine = store.claim("k")
    busy = other.claim("k")
    assert busy.state is ClaimState.BUSY
    assert 0 < busy.expires_in <= 60
    assert store.done(mine) is True
    assert other.claim("k").state is ClaimState.DONE


def test_release_lets_the_next_delivery_run(kit: Kit) -> None:
    store = kit.make()
    first = store.claim("k")
    assert store.release(first) is True
    second = store.claim("k")
    assert second.state is ClaimState.CLAIMED
    assert second.token != first.token
    # The first claim is gone: releasing or finishing it again changes nothing.
    assert store.release(first) is False
    assert store.done(first) is False
    assert store.claim("k").state is ClaimState.BUSY


def test_only_the_owner_of_a_claim_can_finish_it(kit: Kit) -> None:
    store = kit.make()
    mine = store.claim("k")
    forged = Claim("k", ClaimState.CLAIMED, token="0" * 32)
    assert store.release(forged) is False
    assert store.done(forged) is False
    assert store.claim("k").state is ClaimState.BUSY
    not_owned = Claim("k", ClaimState.BUSY)
    assert store.release(not_owned) is False
    assert store.done(not_owned) is False
    assert store.release(mine) is True
    # Not even on a free key: a claim that was never granted records nothing.
    assert store.done(Claim("free", ClaimState.BUSY)) is False
    assert store.claim("free").state is ClaimState.CLAIMED


def test_an_unfinished_claim_expires_after_the_lease(kit: Kit) -> None:
    lease = 0.4
    store = kit.make(lease=lease)
    start = time.monotonic() if kit.kind != "memory" else 0.0
    crashed = store.claim("k")  # never finished, as by a process that died
    assert crashed.state is ClaimState.CLAIMED
    # The retrying caller has a long lease, so that its own claim cannot run out in the test.
    retried = wait_until_claimed(kit, kit.peer(store, lease=60), "k", limit=10)
    assert retried.state is ClaimState.CLAIMED
    if kit.kind != "memory":
        assert time.monotonic() - start >= lease - 0.05
    # The crashed caller lost its claim: it can no longer release the new one.
    assert store.release(crashed) is False
    assert store.done(retried) is True
    assert store.claim("k").state is ClaimState.DONE


def test_done_after_the_lease_ran_out_still_records_the_key(kit: Kit) -> None:
    store = kit.make(lease=0.3)
    slow = store.claim("k")
    kit.wait(0.5)
    # Nobody claimed it meanwhile: the handlers did succeed, so the key is recorded, but the
    # caller is told its lease was too short.
    assert store.done(slow) is False
    assert store.claim("k").state is ClaimState.DONE


def test_done_never_overwrites_a_claim_taken_after_the_lease(kit: Kit) -> None:
    store = kit.make(lease=0.3)
    slow = store.claim("k")
    newer = wait_until_claimed(kit, kit.peer(store, lease=60), "k", limit=10)
    assert newer.state is ClaimState.CLAIMED
    assert store.done(slow) is False
    assert store.claim("k").state is ClaimState.BUSY
    assert store.release(newer) is True


def test_a_done_key_is_forgotten_after_the_ttl(kit: Kit) -> None:
    ttl = 0.4
    store = kit.make(ttl=ttl)
    start = time.monotonic() if kit.kind != "memory" else 0.0
    assert store.done(store.claim("k")) is True
    again = wait_until_claimed(kit, store, "k", limit=10)
    assert again.state is ClaimState.CLAIMED
    if kit.kind != "memory":
        assert time.monotonic() - start >= ttl - 0.05


def test_keys_are_independent(kit: Kit) -> None:
    store = kit.make()
    a = store.claim("a")
    assert store.claim("b").state is ClaimState.CLAIMED
    assert store.done(a) is True
    assert store.claim("b").state is ClaimState.BUSY
    assert store.claim("a").state is ClaimState.DONE


def test_concurrent_claims_have_exactly_one_winner_per_key(kit: Kit) -> None:
    store = kit.make()
    keys = [f"k{i}" for i in range(40)]
    workers = 8
    barrier = threading.Barrier(workers, timeout=10)
    won: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def claim_all() -> None:
        try:
            barrier.wait()
            for key in keys:
                claim = store.claim(key)
                if claim.state is ClaimState.CLAIMED:
                    with lock:
                        won.append(key)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=claim_all) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    assert sorted(won) == sorted(keys)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"ttl": 0}, "ttl must be a positive number"),
        ({"ttl": -1}, "ttl must be a positive number"),
        ({"lease": "60"}, "lease must be a positive number"),
        ({"lease": True}, "lease must be a positive number"),
    ],
)
def test_stores_refuse_bad_times(kit: Kit, options: dict[str, t.Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        kit.make(**options)


# -- memory only -------------------------------------------------------------------------------


def test_memory_store_is_bounded_and_drops_the_oldest_key() -> None:
    store = MemoryDedupeStore(max_entries=3)
    for key in ("a", "b", "c"):
        store.done(store.claim(key))
    assert store.claim("d").state is ClaimState.CLAIMED
    assert len(store) == 3
    # "a" was the oldest: it was dropped, so it would run again.
    assert store.claim("a").state is ClaimState.CLAIMED
    assert store.claim("c").state is ClaimState.DONE


def test_memory_store_drops_expired_keys_before_live_ones() -> None:
    clock = FakeClock()
    store = MemoryDedupeStore(ttl=10, max_entries=100, lease=5, timer=clock)
    for key in ("a", "b"):
        store.done(store.claim(key))
    clock.advance(11)
    store.claim("c")
    assert len(store) == 1
    assert store.claim("a").state is ClaimState.CLAIMED


def test_memory_store_refuses_a_bad_bound() -> None:
    with pytest.raises(ConfigurationError, match="max_entries must be a positive integer"):
        MemoryDedupeStore(max_entries=0)


def test_memory_store_repr_shows_its_settings() -> None:
    assert repr(MemoryDedupeStore(ttl=30, lease=5)) == ("<MemoryDedupeStore keys=0 ttl=30 lease=5>")


# -- Redis only --------------------------------------------------------------------------------


def test_redis_store_keeps_keys_under_its_prefix_with_an_expiry(redis_server: RedisServer) -> None:
    client = connect(redis_server)
    try:
        store = RedisDedupeStore(client, ttl=600, prefix="app1:", lease=60)
        claim = store.claim("abc")
        assert claim.token is not None
        assert client.get("app1:abc") == claim.token.encode()
        assert 0 < client.pttl("app1:abc") <= 60_000
        store.done(claim)
        assert client.get("app1:abc") == b"done"
        assert 60_000 < client.pttl("app1:abc") <= 600_000
        # Another prefix is another key space.
        assert RedisDedupeStore(client, prefix="app2:").claim("abc").state is ClaimState.CLAIMED
    finally:
        client.close()


def test_redis_store_works_with_a_decoding_client(redis_server: RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.url, decode_responses=True, socket_timeout=2)
    try:
        store = RedisDedupeStore(client)
        claim = store.claim("k")
        assert store.claim("k").state is ClaimState.BUSY
        assert store.done(claim) is True
        assert store.claim("k").state is ClaimState.DONE
    finally:
        client.close()


def test_redis_store_propagates_a_server_that_is_down(redis_server: RedisServer) -> None:
    client = connect(redis_server)
    try:
        store = RedisDedupeStore(client)
        redis_server.stop()
        with pytest.raises(redis.ConnectionError):
            store.claim("k")
    finally:
        client.close()


def test_redis_store_reloads_its_scripts_after_a_restart(redis_server: RedisServer) -> None:
    client = connect(redis_server)
    try:
        store = RedisDedupeStore(client)
        store.done(store.claim("k"))
        redis_server.stop()
        redis_server.start()
        # The new server knows neither the key (no persistence) nor the scripts.
        claim = store.claim("k")
        assert claim.state is ClaimState.CLAIMED
        assert store.release(claim) is True
    finally:
        client.close()


def test_a_store_is_true_empty_or_not(kit: Kit) -> None:
    # ``if store:`` must not take a fresh store for none.
    store = kit.make()
    assert bool(store) is True
    if isinstance(store, MemoryDedupeStore):
        assert len(store) == 0


# -- batches -----------------------------------------------------------------------------------


def test_a_batch_claim_gives_each_key_its_own_state(kit: Kit) -> None:
    store = kit.make()
    assert isinstance(store, BatchDedupeStore)
    other = kit.peer(store)
    handled = store.claim("handled")
    assert store.done(handled)
    running = other.claim("running")
    keys = ["handled", "running", *(f"new-{n}" for n in range(50))]
    claims = store.claim_many(keys)
    assert [claim.key for claim in claims] == keys
    assert [claim.state for claim in claims[:2]] == [ClaimState.DONE, ClaimState.BUSY]
    assert {claim.state for claim in claims[2:]} == {ClaimState.CLAIMED}
    assert len({claim.token for claim in claims[2:]}) == 50
    assert store.claim_many([]) == []
    # Settled together, each as it ended: done ones are duplicates, released ones free.
    outcomes = [(claim, number % 2 == 0) for number, claim in enumerate(claims[2:])]
    forged = Claim("running", ClaimState.CLAIMED, token="0" * 32)
    assert store.settle_many([*outcomes, (forged, True), (claims[0], True)]) == [
        *([True] * 50),
        False,
        False,
    ]
    again = {claim.key: claim.state for claim in store.claim_many(keys)}
    assert again["handled"] is ClaimState.DONE and again["running"] is ClaimState.BUSY
    for number in range(50):
        expected = ClaimState.DONE if number % 2 == 0 else ClaimState.CLAIMED
        assert again[f"new-{number}"] is expected
    assert other.release(running)
    assert store.settle_many([]) == []


def test_a_batch_settle_after_the_lease_ran_out_says_so_per_claim(kit: Kit) -> None:
    store = kit.make(lease=0.3)
    assert isinstance(store, BatchDedupeStore)
    early, late = store.claim_many(["early", "late"])
    assert store.settle_many([(early, True)]) == [True]
    kit.wait(0.5)
    assert store.settle_many([(late, True)]) == [False]  # recorded all the same
    assert [c.state for c in store.claim_many(["early", "late"])] == [ClaimState.DONE] * 2
