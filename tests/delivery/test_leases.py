"""A live handler keeps its claim past the lease; a dead process's claim still expires.

Both against a real ``redis-server``: receivers with separate clients stand for separate
processes, and the dead one is a real process killed with SIGKILL mid-handler.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import typing as t

import pytest
import redis

from yalgaar_receiver import DispatchUnavailableError, Event, Receiver
from yalgaar_receiver.delivery.dedupe import (
    Claim,
    ClaimState,
    LeaseKeeper,
    MemoryDedupeStore,
    RedisDedupeStore,
)
from yalgaar_receiver.testing import bind, presence_envelope

from ..servers import RedisServer
from .test_batches import PerEvent

KEY = "ck-4704a1b2c3d4402f"
BODY = presence_envelope(bind("room", "slow", at=1_700_000_000), client_key=KEY).to_bytes()


def slow_receiver(store: t.Any, release: threading.Event, runs: list[str]) -> Receiver:
    receiver = Receiver(client_keys=[KEY], dedupe=store)

    @receiver.on_bind
    def slow(event: Event) -> None:
        runs.append(event.uuid or "")
        assert release.wait(20)

    return receiver


def second_delivery_while_slow(url: str, make: t.Callable[[redis.Redis], t.Any]) -> list[str]:
    """A handler runs 2.5 leases (1 s each) while another process gets the same body after
    1.5; how often the handler ran."""
    first, second = redis.Redis.from_url(url), redis.Redis.from_url(url)
    runs: list[str] = []
    release = threading.Event()
    slow = slow_receiver(make(first), release, runs)
    thread = threading.Thread(target=slow.handle, args=(BODY,))
    thread.start()
    try:
        time.sleep(1.5)
        other = Receiver(client_keys=[KEY], dedupe=make(second))
        other.on_bind(lambda event: runs.append(event.uuid or ""))
        try:
            other.handle(BODY)
        except DispatchUnavailableError:
            pass  # busy: the first delivery still holds the claim
        time.sleep(1.0)
    finally:
        release.set()
        thread.join(20)
        first.close()
        second.close()
    return runs


def test_a_handler_slower_than_the_lease_runs_once(redis_server: RedisServer) -> None:
    runs = second_delivery_while_slow(
        redis_server.url, lambda client: RedisDedupeStore(client, prefix="lease:", lease=1.0)
    )
    assert runs == ["slow"]


def test_without_renewal_the_same_handler_runs_twice(redis_server: RedisServer) -> None:
    # The switch is live: the same store through its per-event methods only has no renewal.
    runs = second_delivery_while_slow(
        redis_server.url,
        lambda client: PerEvent(RedisDedupeStore(client, prefix="no-lease:", lease=1.0)),
    )
    assert runs == ["slow", "slow"]


_DYING_WORKER = textwrap.dedent(
    """
    import sys, time
    import redis
    from yalgaar_receiver import Receiver
    from yalgaar_receiver.delivery.dedupe import RedisDedupeStore
    from yalgaar_receiver.testing import bind, presence_envelope

    KEY = "ck-4704a1b2c3d4402f"
    receiver = Receiver(
        client_keys=[KEY],
        dedupe=RedisDedupeStore(redis.Redis.from_url(sys.argv[1]), prefix="dying:", lease=1.0),
    )

    @receiver.on_bind
    def slow(event):
        print("claimed", flush=True)
        time.sleep(60)  # killed long before

    receiver.handle(
        presence_envelope(bind("room", "slow", at=1_700_000_000), client_key=KEY).to_bytes()
    )
    """
)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_a_killed_process_lets_its_renewed_claim_expire(redis_server: RedisServer) -> None:
    worker = subprocess.Popen(
        [sys.executable, "-c", _DYING_WORKER, redis_server.url],
        stdout=subprocess.PIPE,
        text=True,
    )
    client = redis.Redis.from_url(redis_server.url)
    try:
        assert worker.stdout is not None
        assert worker.stdout.readline() == "claimed\n"
        runs: list[str] = []
        other = Receiver(
            client_keys=[KEY], dedupe=RedisDedupeStore(client, prefix="dying:", lease=1.0)
        )
        other.on_bind(lambda event: runs.append(event.uuid or ""))
        time.sleep(2.0)  # two leases: alive only because the worker renews it
        with pytest.raises(DispatchUnavailableError):
            other.handle(BODY)
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(10)
        killed = time.monotonic()
        deadline = killed + 10
        while not runs:
            assert time.monotonic() < deadline, "the dead worker's claim never expired"
            try:
                other.handle(BODY)
            except DispatchUnavailableError:
                time.sleep(0.05)
        assert time.monotonic() - killed < 1.0 + 0.5  # within a lease of the death
        assert runs == ["slow"]
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(10)
        if worker.stdout is not None:
            worker.stdout.close()
        client.close()


def test_a_claim_held_past_max_hold_is_left_to_expire() -> None:
    clock = [0.0]
    store = MemoryDedupeStore(lease=30, timer=lambda: clock[0])
    keeper = LeaseKeeper(store, interval=1000, max_hold=100, timer=lambda: clock[0])
    try:
        claim = store.claim("k")
        keeper.hold([claim, Claim("done", ClaimState.DONE)])
        assert repr(keeper) == "<LeaseKeeper held=1 interval=1000>"
        clock[0] = 25.0
        keeper.renew()  # renewed at 25 for 30 more: alive at 50
        clock[0] = 50.0
        assert store.claim("k").state is ClaimState.BUSY
        clock[0] = 120.0
        keeper.renew()  # held for 120 > 100: no longer renewed
        assert repr(keeper) == "<LeaseKeeper held=0 interval=1000>"
        assert store.claim("k").state is ClaimState.CLAIMED  # expired at 55
    finally:
        keeper.close()


class SettledMidRenewal(MemoryDedupeStore):
    """A store whose renewal crosses the settlement of the claim it renews: the event ends
    (drop, then done) after the keeper read its claims and before the store answers."""

    keeper: LeaseKeeper

    def renew_many(self, claims: t.Sequence[Claim]) -> list[bool]:
        self.keeper.drop(claims)
        for claim in claims:
            self.done(claim)
        return super().renew_many(claims)


def test_a_claim_settled_during_its_renewal_is_not_called_lost(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = SettledMidRenewal(lease=30)
    store.keeper = keeper = LeaseKeeper(store, interval=1000)
    try:
        keeper.hold([store.claim("settled")])
        keeper.renew()
        assert "expired or were taken" not in caplog.text
        # A claim still held that the store no longer has is lost, and said so.
        plain = MemoryDedupeStore(lease=30)
        other = LeaseKeeper(plain, interval=1000)
        claim = plain.claim("taken")
        other.hold([claim])
        plain.release(claim)
        other.renew()
        other.close()
        assert "1 claim(s) expired or were taken" in caplog.text
    finally:
        keeper.close()


def test_the_renewal_thread_ends_when_nothing_is_held() -> None:
    store = MemoryDedupeStore(lease=30)
    keeper = LeaseKeeper(store, interval=0.05)
    claim = store.claim("k")
    before = set(threading.enumerate())
    keeper.hold([claim])
    [thread] = [t for t in set(threading.enumerate()) - before if t.name == "yalgaar-lease"]
    keeper.drop([claim])
    thread.join(5)
    assert not thread.is_alive()
    keeper.hold([claim])  # a new one starts for the next claim
    keeper.close()
    assert not [t for t in set(threading.enumerate()) - before if t.is_alive()]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_renews_its_own_claims_only() -> None:
    store = MemoryDedupeStore(lease=30)
    keeper = LeaseKeeper(store, interval=0.05)
    parents = store.claim("parent")
    keeper.hold([parents])
    pid = os.fork()
    if pid == 0:  # the child: none of the parent's claims, and a thread of its own
        code = 1
        try:
            empty = repr(keeper) == "<LeaseKeeper held=0 interval=0.05>"
            keeper.hold([store.claim("child")])
            renewing = [t for t in threading.enumerate() if t.name == "yalgaar-lease"]
            code = 0 if empty and len(renewing) == 1 and renewing[0].is_alive() else 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    keeper.drop([parents])
    keeper.close()
    assert os.waitstatus_to_exitcode(status) == 0
