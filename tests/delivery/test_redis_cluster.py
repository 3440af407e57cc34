"""Every Redis-backed piece on a real 3-master Redis Cluster (started once for the run, on
127.0.0.1): the keys of a batch spread over the nodes, each store's multi-key scripts stay in
one slot, and a Celery worker (its broker a plain Redis) uses cluster-backed stores.

The per-method contracts run on the cluster too: ``test_dedupe_stores.py`` and
``tests/presence/test_presence.py`` take it as one more kind of store.
"""

from __future__ import annotations

import logging
import threading
import time
import typing as t
import uuid

import pytest
import redis
from celery import Celery
from celery.contrib.testing.worker import start_worker
from redis.cluster import RedisCluster as ClusterClient

from yalgaar_receiver import Event, MessageEvent, Receiver
from yalgaar_receiver.delivery import DeadLetter, RedisDeadLetterSink
from yalgaar_receiver.delivery.celery import CeleryDispatcher
from yalgaar_receiver.delivery.dedupe import RedisDedupeStore
from yalgaar_receiver.presence import PresenceTracker, RedisPresenceStore
from yalgaar_receiver.testing import (
    bind,
    capture_events,
    message,
    message_envelope,
    presence_envelope,
)

from ..servers import RedisCluster, RedisServer

KEY = "ck-4704a1b2c3d4402f"


def keys_per_node(cluster: RedisCluster, pattern: str) -> list[int]:
    counts = []
    for port in cluster.ports:
        with redis.Redis(host="127.0.0.1", port=port) as node:
            counts.append(sum(1 for _ in node.scan_iter(match=pattern, count=1000)))
    return counts


def counting_client(
    cluster: RedisCluster, monkeypatch: pytest.MonkeyPatch
) -> tuple[ClusterClient, list[int]]:
    """A cluster client, and the count of requests it sends to any node (each one a round
    trip to that node), counted on redis-py's connections for the rest of the test."""
    trips = [0]
    lock = threading.Lock()
    send = redis.Connection.send_packed_command

    def counted(self: redis.Connection, command: t.Any, check_health: bool = True) -> None:
        with lock:
            trips[0] += 1
        send(self, command, check_health)  # type: ignore[no-untyped-call]

    client = cluster.client()
    warm = RedisDedupeStore(client, prefix=f"warm-up-{uuid.uuid4().hex}:")
    claims = warm.claim_many([str(number) for number in range(64)])  # a connection per node
    warm.settle_many([(claim, False) for claim in claims])
    monkeypatch.setattr(redis.Connection, "send_packed_command", counted)
    return client, trips


def test_the_keys_of_one_batch_spread_over_every_node(
    redis_cluster: RedisCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, trips = counting_client(redis_cluster, monkeypatch)
    prefix = f"spread-{uuid.uuid4().hex[:8]}:"
    receiver = Receiver(client_keys=[KEY], dedupe=RedisDedupeStore(client, prefix=prefix))
    ran: list[Event] = []
    receiver.on_presence(ran.append)
    items = [bind("room", f"member-{n}", at=1_700_000_000 + n) for n in range(200)]
    body = presence_envelope(*items, client_key=KEY).to_bytes()
    receiver.handle(body)
    sent = trips[0]
    assert len(ran) == 200
    # One pipeline per node to claim, one per node to settle (sent to the nodes in turn).
    assert sent == 2 * len(redis_cluster.ports)
    per_node = keys_per_node(redis_cluster, f"{prefix}*")
    assert sum(per_node) == 200 and all(count > 20 for count in per_node)
    assert len(receiver.handle(body).duplicates) == 200
    client.close()


def test_a_presence_store_keeps_one_slot_and_many_stores_spread(
    redis_cluster: RedisCluster,
) -> None:
    client = redis_cluster.client(decode_responses=True)
    run = uuid.uuid4().hex[:8]
    stores = [RedisPresenceStore(client, prefix=f"app{n}-{run}:") for n in range(24)]
    for store in stores:
        receiver = Receiver(client_keys=[KEY])
        with PresenceTracker(receiver, store=store, sweep_interval=None):
            receiver.handle(
                presence_envelope(
                    bind("c:1", "a", at=1), bind("c:2", "b", at=2), client_key=KEY
                ).to_bytes()
            )
        assert store.key_prefix == "{" + store.prefix + "}"
        keys = list(client.scan_iter(match=f"{{{store.prefix}}}*"))
        assert {client.keyslot(key) for key in keys} == {client.keyslot(store.key_prefix)}
        assert sorted(keys) == sorted(
            f"{store.key_prefix}{name}"
            for name in ("members:c:1", "members:c:2", "state:c:1", "state:c:2", "channels")
        )
        assert store.counts() == (2, 2)
    per_node = keys_per_node(redis_cluster, f"{{app*-{run}:}}*")
    assert all(count > 0 for count in per_node)  # the apps spread over all three nodes
    # A prefix with a hash tag of its own is kept as given.
    tagged = RedisPresenceStore(client, prefix="{tenant-7}:presence:")
    assert tagged.key_prefix == "{tenant-7}:presence:"
    client.close()


def test_a_presence_store_applies_an_envelope_in_one_script_on_a_cluster(
    redis_cluster: RedisCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, trips = counting_client(redis_cluster, monkeypatch)
    receiver = Receiver(client_keys=[KEY])
    store = RedisPresenceStore(client, prefix=f"one-script-{uuid.uuid4().hex[:8]}:")
    with PresenceTracker(receiver, store=store, sweep_interval=None) as tracker:
        receiver.handle(presence_envelope(bind("warm-up", "w", at=1), client_key=KEY).to_bytes())
        trips[0] = 0  # the script is loaded on the store's node now
        items = [bind(f"room-{n % 7}", f"member-{n}", at=1_700_000_000 + n) for n in range(199)]
        outcome = receiver.handle(presence_envelope(*items, client_key=KEY).to_bytes())
        assert not outcome.failed
        assert trips[0] == 1  # one script, on the node of the store's slot
        assert tracker.counts() == (8, 200)
    client.close()


def test_the_dead_letter_sink_on_a_cluster(redis_cluster: RedisCluster) -> None:
    client = redis_cluster.client()
    sink = RedisDeadLetterSink(client, key=f"dead-{uuid.uuid4().hex}")
    event = Receiver(client_keys=[KEY]).handle(
        message_envelope(message("c", "u", "lost"), client_key=KEY).to_bytes()
    )
    letters = [DeadLetter.from_error(event.accepted[0], f"error {n}") for n in range(3)]
    for letter in letters:
        sink.put(letter)
    assert [entry.id for entry in sink.entries()] == [letter.id for letter in letters]
    assert sink.remove({letters[1].id}) == 1
    assert [entry.id for entry in sink.entries()] == [letters[0].id, letters[2].id]
    client.close()


def test_a_celery_worker_uses_cluster_stores(
    redis_cluster: RedisCluster, redis_server: RedisServer
) -> None:
    # The broker is a plain Redis (kombu has no Redis Cluster transport); de-duplication,
    # presence and dead letters of the worker are on the cluster.
    cluster = redis_cluster.client()
    run = uuid.uuid4().hex[:8]
    app = Celery("yalgaar_cluster_test", broker=redis_server.url)
    app.conf.update(broker_connection_retry_on_startup=True, worker_hijack_root_logger=False)
    sink = RedisDeadLetterSink(cluster, key=f"dead-{run}")
    dispatcher = CeleryDispatcher(
        app, queue=f"cluster-{run}", max_retries=0, retry_jitter=False, dead_letters=sink
    )
    dedupe = RedisDedupeStore(cluster, prefix=f"dedupe-{run}:")
    receiver = Receiver([KEY], dispatcher=dispatcher, dedupe=dedupe)
    tracker = PresenceTracker(
        receiver, store=RedisPresenceStore(cluster, prefix=f"presence-{run}:"), sweep_interval=None
    )

    @receiver.on_message
    def failing(event: MessageEvent) -> None:
        raise RuntimeError("always")

    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)  # the worker sets up logging its way
    try:
        with (
            capture_events(receiver) as capture,
            start_worker(app, pool="solo", perform_ping_check=False, queues=[f"cluster-{run}"]),
        ):
            binds = [bind("room", f"m{n}", at=1_700_000_000 + n) for n in range(3)]
            receiver.handle(presence_envelope(*binds, client_key=KEY).to_bytes())
            receiver.handle(message_envelope(message("c", "u", "x"), client_key=KEY).to_bytes())
            capture.wait_for(4, timeout=30)
            deadline = time.monotonic() + 30
            while not (letters := sink.entries()) and time.monotonic() < deadline:
                time.sleep(0.05)
    finally:
        tracker.close()
        app.close()
        root.setLevel(level)
        root.handlers[:] = handlers
    assert tracker.members("room") == frozenset({"m0", "m1", "m2"})
    assert len(letters) == 1 and letters[0].event["channel"] == "c"
    assert sum(keys_per_node(redis_cluster, f"dedupe-{run}:*")) == 3  # three binds done
    cluster.close()
