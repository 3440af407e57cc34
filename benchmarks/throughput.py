"""Measurement 6 of ``make bench``: events per second end to end, and CPU per event.

HTTP posts of 200-item Presence envelopes go through gunicorn (2 sync workers) and Celery (one
prefork worker with 2 processes, Redis broker) to a no-op handler, with Redis de-duplication
and presence on (``pipeline.py``), once per ``CeleryDispatcher`` mode. Beside them, the floor:
bare Celery tasks on the same broker and worker, each of which only counts itself. Two
``redis-server`` processes, the broker and the stores, so that each one's CPU time is read
apart. Every item is a bind of a uuid of its own, so no event is a duplicate and the run is
over when the presence store holds every uuid.

Runs alone too: ``python throughput.py --envelopes 20``.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import queue
import statistics
import threading
import time
import typing as t
from dataclasses import dataclass

import envelopes
import pipeline
import processes
import redis
from celery import Celery

from yalgaar_receiver.presence import RedisPresenceStore

#: The modes measured, in this order, after the floor.
MODES = ("event", "envelope")
ITEMS = 200
WEB_WORKERS = 2
WORKER_PROCESSES = 2
#: Concurrent posters: two per web worker, as the HTTP measurement drives them.
POSTERS = 2 * WEB_WORKERS
#: The longest one side may take before the run is called failed.
DEADLINE = 600.0
#: How many times more envelopes ``mode=envelope`` gets: at about 20 times the events per
#: second of the others, the same count would be over too soon for CPU times read from /proc
#: in ticks of 10 ms.
ENVELOPE_FACTOR = 5


@dataclass
class Side:
    """What one side of the measurement did: events, wall time, CPU seconds by process type."""

    name: str
    events: int
    seconds: float
    cpu: dict[str, float]
    #: What one de-duplication key takes in Redis (``MEMORY USAGE``, the mean of a sample).
    key_bytes: float | None = None

    @property
    def per_second(self) -> float:
        return self.events / self.seconds

    def micros(self, kind: str) -> float:
        """CPU microseconds per event of one process type."""
        return self.cpu[kind] / self.events * 1e6


def body(number: int) -> bytes:
    """Envelope ``number``: 200 binds over 50 channels, each of a uuid no other item has."""
    data = [
        {
            "channel": f"orders-{n % 50}",
            "uuid": f"member-{number}-{n}",
            "timestamp": str(1_764_340_000 + number * 2 + n // envelopes.EVENTS_PER_SECOND),
            "action": "bind",
        }
        for n in range(ITEMS)
    ]
    envelope = {"items": {"source": "Presence", "clientKey": envelopes.CLIENT_KEY, "data": data}}
    return json.dumps(envelope).encode("utf-8")


def _post_all(port: int, bodies: t.Sequence[bytes]) -> None:
    """POST every body from ``POSTERS`` threads; raise unless each was answered 200."""
    work: queue.Queue[bytes] = queue.Queue()
    for one in bodies:
        work.put(one)
    errors: list[str] = []

    def poster() -> None:
        while True:
            try:
                one = work.get_nowait()
            except queue.Empty:
                return
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            try:
                connection.request(
                    "POST", "/yalgaar/presence", one, {"Content-Type": "application/json"}
                )
                answer = connection.getresponse()
                answer.read()
                if answer.status != 200:
                    errors.append(f"answered {answer.status}")
            finally:
                connection.close()

    threads = [threading.Thread(target=poster) for _ in range(POSTERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(DEADLINE)
    if errors or any(thread.is_alive() for thread in threads):
        raise RuntimeError(f"the posts failed: {errors[:5]}")


def _wait_until(done: t.Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not done():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not happen in {DEADLINE:g} s")
        time.sleep(0.05)


def _cpu(pieces: t.Mapping[str, t.Any]) -> dict[str, float]:
    return {kind: piece.cpu_seconds() for kind, piece in pieces.items()}


def _floor(broker: processes.RedisProcess, stores: processes.RedisProcess, tasks: int) -> Side:
    client = redis.Redis.from_url(stores.url)
    producer = Celery("bench_floor", broker=broker.url)
    env = {"BENCH_BROKER_URL": broker.url, "BENCH_STORE_URL": stores.url, "BENCH_ROLE": "worker"}
    with processes.celery_worker("pipeline:celery_app", pipeline.QUEUE, WORKER_PROCESSES, env) as w:
        client.delete(pipeline.FLOOR_COUNTER)
        producer.send_task("bench.floor", queue=pipeline.QUEUE)
        _wait_until(lambda: client.get(pipeline.FLOOR_COUNTER) == b"1", "the worker's first task")
        pieces = {"worker": w, "broker": broker, "stores": stores}
        before, started = _cpu(pieces), time.monotonic()
        with producer.connection_for_write() as connection:
            for _ in range(tasks):
                producer.send_task("bench.floor", queue=pipeline.QUEUE, connection=connection)
        _wait_until(
            lambda: int(client.get(pipeline.FLOOR_COUNTER) or 0) == tasks + 1, "the floor's tasks"
        )
        seconds = time.monotonic() - started
        after = _cpu(pieces)
    client.close()
    return Side("floor", tasks, seconds, {k: after[k] - before[k] for k in after})


def _pipeline(
    mode: str, broker: processes.RedisProcess, stores: processes.RedisProcess, count: int
) -> Side:
    client = redis.Redis.from_url(stores.url)
    client.flushdb()  # fresh de-duplication keys and presence state
    store = RedisPresenceStore(client, prefix=pipeline.PRESENCE_PREFIX)
    env = {"BENCH_BROKER_URL": broker.url, "BENCH_STORE_URL": stores.url, "BENCH_MODE": mode}
    bodies = [body(number) for number in range(1, count + 1)]
    with (
        processes.celery_worker(
            "pipeline:celery_app",
            pipeline.QUEUE,
            WORKER_PROCESSES,
            {**env, "BENCH_ROLE": "worker"},
        ) as worker,
        processes.gunicorn("pipeline:make_app()", WEB_WORKERS, env) as web,
    ):
        _post_all(web.port, [body(0)])  # a warm-up: imports, connections, scripts
        _wait_until(lambda: store.counts()[1] == ITEMS, "the warm-up envelope")
        pieces = {"web": web, "worker": worker, "broker": broker, "stores": stores}
        before, started = _cpu(pieces), time.monotonic()
        _post_all(web.port, bodies)
        total = ITEMS * (count + 1)
        _wait_until(lambda: store.counts()[1] == total, f"the {mode}-mode events")
        seconds = time.monotonic() - started
        after = _cpu(pieces)
    keys = list(itertools.islice(client.scan_iter(match="bench:dedupe:*", count=1000), 100))
    key_bytes = statistics.mean(int(client.memory_usage(key) or 0) for key in keys)
    client.close()
    cpu = {k: after[k] - before[k] for k in after}
    return Side(f"mode={mode}", ITEMS * count, seconds, cpu, key_bytes)


def measure(count: int) -> list[Side]:
    """The floor (``count`` envelopes' worth of tasks), then each mode (``count`` envelopes,
    ``ENVELOPE_FACTOR`` times more per envelope), on one broker and one stores server."""
    with processes.redis_server() as broker, processes.redis_server() as stores:
        sides = [_floor(broker, stores, ITEMS * count)]
        sides += [
            _pipeline(mode, broker, stores, count * (ENVELOPE_FACTOR if mode == "envelope" else 1))
            for mode in MODES
        ]
    return sides


KINDS = ("web", "worker", "broker", "stores")


def rows(sides: t.Sequence[Side]) -> list[tuple[object, ...]]:
    """One table row per side: events, seconds, events/s, its ratio to the floor, CPU µs per
    event of each process type and in all."""
    floor = sides[0]
    found = []
    for side in sides:
        micros = [f"{side.micros(k):.0f}" if k in side.cpu else "-" for k in KINDS]
        total = sum(side.micros(k) for k in side.cpu)
        found.append(
            (
                side.name,
                side.events,
                f"{side.seconds:.1f}",
                f"{side.per_second:,.0f}",
                f"{side.per_second / floor.per_second:.2f}",
                *micros,
                f"{total:.0f}",
            )
        )
    return found


HEADER = (
    "side", "events", "seconds", "events/s", "of floor",
    "web µs/event", "worker µs/event", "broker µs/event", "stores µs/event", "all µs/event",
)  # fmt: skip


def main(argv: t.Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--envelopes", type=int, default=50, help="envelopes per mode")
    args = parser.parse_args(argv)
    table = rows(measure(args.envelopes))
    print("| " + " | ".join(HEADER) + " |")
    for row in table:
        print("| " + " | ".join(str(cell) for cell in row) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
