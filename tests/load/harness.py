"""The pieces of the load suite: a gunicorn fleet, envelopes, clients that resend, figures.

Everything talks to 127.0.0.1 only, every wait is bounded, and every process started here is
stopped (its whole process group) even when a test fails.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import typing as t
from dataclasses import dataclass, field
from pathlib import Path

import redis

from ..servers import RedisServer, free_port, require_program

ROOT = Path(__file__).parent.parent.parent
CONF = Path(__file__).parent / "gunicorn_conf.py"
CLIENT_KEY = "ck-0123456789abcdef"
TOKEN = "load-t0ken-4d8e1f"
ITEMS_PER_ENVELOPE = 200
MALFORMED_PER_ENVELOPE = 2
WORKERS = 2
THREADS = 8


@dataclass
class Fleet:
    """gunicorn running ``examples/production_app.py`` with 2 gthread workers."""

    port: int
    process: subprocess.Popen[bytes]
    log: Path
    store: redis.Redis

    @property
    def path(self) -> str:
        return f"/yalgaar/{TOKEN}/"

    def worker_pids(self) -> list[int]:
        """The workers that registered and are still alive."""
        pids = sorted(int(p) for p in t.cast(set[bytes], self.store.smembers("load:workers")))
        return [pid for pid in pids if _alive(pid)]

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def start_fleet(
    redis_server: RedisServer, *, lease: float = 3.0, worker_class: str = "gthread"
) -> t.Iterator[Fleet]:
    """Generator for a fixture: gunicorn started and ready, stopped afterwards.

    :param worker_class: ``gthread`` is the deployment the suite checks; ``sync`` shows what
        slow clients do to it (see ``docs/security.md``).
    """
    require_program("redis-server")
    store = redis.Redis.from_url(redis_server.url)
    port = free_port()
    env = {
        **os.environ,
        "YALGAAR_CLIENT_KEYS": CLIENT_KEY,
        "YALGAAR_URL_TOKENS": TOKEN,
        "YALGAAR_REDIS_URL": redis_server.url,
        "YALGAAR_DEDUPE_LEASE": str(lease),
        "LOAD_REDIS_URL": redis_server.url,
    }
    with tempfile.TemporaryDirectory(prefix="yalgaar-load-") as directory:
        log = Path(directory) / "gunicorn.log"
        with log.open("wb") as sink:
            process = subprocess.Popen(
                [
                    sys.executable, "-m", "gunicorn",
                    "--config", str(CONF),
                    "--chdir", str(ROOT),
                    "--bind", f"127.0.0.1:{port}",
                    "--worker-class", worker_class,
                    "--workers", str(WORKERS),
                    "--threads", str(THREADS if worker_class == "gthread" else 1),
                    "--timeout", "30",
                    "--graceful-timeout", "5",
                    "--keep-alive", "5",
                    "examples.production_app:create_app()",
                ],
                env=env,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        fleet = Fleet(port=port, process=process, log=log, store=store)
        try:
            _wait_ready(fleet)
            yield fleet
        finally:
            _stop(process)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A killed worker stays a zombie until the master reaps it.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def _wait_ready(fleet: Fleet, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if fleet.process.poll() is not None:
            raise RuntimeError(f"gunicorn exited:\n{fleet.log_tail()}")
        if len(fleet.worker_pids()) == WORKERS:
            try:
                status, _, _ = request(fleet.port, "GET", fleet.path, b"")
                if status == 200:
                    return
            except OSError:
                pass
        time.sleep(0.1)
    raise RuntimeError(f"gunicorn was not ready in {timeout} s:\n{fleet.log_tail()}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
    # The workers are in the master's process group (start_new_session): none may outlive it.
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if process.poll() is None:
        process.wait(timeout=10)


def request(
    port: int, method: str, path: str, body: bytes, timeout: float = 30.0
) -> tuple[int, dict[str, str], bytes]:
    """One request on a fresh connection."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


# -- envelopes --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Envelope:
    """One body to send, and what the receiver must make of it."""

    name: str
    body: bytes
    valid_ids: tuple[str, ...]
    malformed: tuple[int, ...]


def make_envelopes(count: int, prefix: str = "ev") -> list[Envelope]:
    """``count`` envelopes of 200 items each, alternating presence and message, 2 malformed."""
    envelopes = []
    for number in range(count):
        items: list[dict[str, object]] = []
        ids: list[str] = []
        malformed: list[int] = []
        presence = number % 2 == 0
        for index in range(ITEMS_PER_ENVELOPE):
            event_id = f"{prefix}-{number}-{index}"
            if index % (ITEMS_PER_ENVELOPE // MALFORMED_PER_ENVELOPE) == 7:
                # No channel: reported in the answer and on event_rejected, never dispatched.
                items.append({"uuid": event_id, "action": "bind", "message": "x"})
                malformed.append(index)
                continue
            item: dict[str, object] = {
                "channel": f"room-{index % 13}",
                "uuid": event_id,
                "timestamp": str(1764300000 + number),
            }
            item["action" if presence else "message"] = "bind" if presence else event_id
            items.append(item)
            ids.append(event_id)
        source = "Presence" if presence else "Message"
        body = {"items": {"source": source, "clientKey": CLIENT_KEY, "data": items}}
        envelopes.append(
            Envelope(f"{prefix}-{number}", json.dumps(body).encode(), tuple(ids), tuple(malformed))
        )
    return envelopes


# -- clients ----------------------------------------------------------------------------------


@dataclass
class Delivery:
    """What happened to one envelope: every attempt, and the answer that ended them."""

    envelope: Envelope
    attempts: list[str] = field(default_factory=list)
    status: int = 0
    answer: dict[str, t.Any] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)


class Client:
    """A sender with one kept-alive connection that resends until a 2xx or a 4xx, like Yalgaar
    might: after a connection error, a timeout or a 5xx (honouring ``Retry-After``)."""

    def __init__(self, port: int, path: str, *, deadline: float = 120.0) -> None:
        self.port = port
        self.path = path
        self.deadline = deadline
        self._connection: http.client.HTTPConnection | None = None

    def send(self, envelope: Envelope, *, body: bytes | None = None) -> Delivery:
        delivery = Delivery(envelope)
        give_up = time.monotonic() + self.deadline
        while True:
            started = time.perf_counter()
            try:
                status, headers, raw = self._post(body if body is not None else envelope.body)
            except (OSError, http.client.HTTPException) as error:
                delivery.attempts.append(type(error).__name__)
                self._reset()
                wait = 0.2
            else:
                delivery.latencies.append(time.perf_counter() - started)
                delivery.attempts.append(str(status))
                if status < 500:
                    delivery.status = status
                    delivery.answer = json.loads(raw) if raw else {}
                    return delivery
                wait = float(headers.get("Retry-After", "0.2"))
            if time.monotonic() + wait > give_up:
                delivery.status = -1
                return delivery
            time.sleep(wait)

    def _post(self, body: bytes) -> tuple[int, dict[str, str], bytes]:
        if self._connection is None:
            self._connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        self._connection.request(
            "POST", self.path, body=body, headers={"Content-Type": "application/json"}
        )
        response = self._connection.getresponse()
        raw = response.read()
        return response.status, {k.title(): v for k, v in response.getheaders()}, raw

    def _reset(self) -> None:
        if self._connection is not None:
            self._connection.close()
        self._connection = None

    def close(self) -> None:
        self._reset()


def run_clients(
    port: int,
    path: str,
    work: list[Envelope],
    *,
    clients: int = 32,
    on_delivery: t.Callable[[Delivery], None] | None = None,
) -> list[Delivery]:
    """Send every envelope in ``work`` from ``clients`` concurrent senders."""
    queue = list(reversed(work))
    lock = threading.Lock()
    deliveries: list[Delivery] = []
    errors: list[BaseException] = []

    def sender() -> None:
        client = Client(port, path)
        try:
            while True:
                with lock:
                    if not queue:
                        return
                    envelope = queue.pop()
                delivery = client.send(envelope)
                with lock:
                    deliveries.append(delivery)
                if on_delivery is not None:
                    on_delivery(delivery)
        except BaseException as error:
            errors.append(error)
        finally:
            client.close()

    threads = [threading.Thread(target=sender, name=f"load-client-{i}") for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not any(thread.is_alive() for thread in threads), "a client did not finish"
    if errors:
        raise errors[0]
    return deliveries


# -- slow clients -----------------------------------------------------------------------------


class SlowClient(threading.Thread):
    """Sends a request one byte a second, until told to stop."""

    def __init__(self, port: int, path: str, *, body: bool) -> None:
        super().__init__(name="slow-client", daemon=True)
        self.port = port
        headers = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        if body:
            # The headers arrive at once and the body trickles: the app itself reads it.
            self.head = (headers + "Content-Length: 100000\r\n\r\n").encode()
            self.trickle = b" " * 100_000
        else:
            self.head = b""
            self.trickle = (headers + "X-Slow: " + "a" * 1000).encode()
        self.stop = threading.Event()
        self.sent = 0

    def run(self) -> None:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
                sock.sendall(self.head)
                for byte in self.trickle:
                    if self.stop.wait(1.0):
                        return
                    sock.sendall(bytes([byte]))
                    self.sent += 1
        except OSError:
            pass  # the server gave up on us: that is allowed


# -- figures ----------------------------------------------------------------------------------


def percentile(values: t.Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


#: Every report of the run, printed again at its end by ``tests/load/conftest.py``.
REPORTS: list[str] = []


def report(title: str, figures: t.Mapping[str, object]) -> str:
    """Print a test's figures now (with ``-s``) and keep them for the end of the run."""
    width = max(len(k) for k in figures)
    lines = [f"== {title} =="] + [f"  {k.ljust(width)}  {v}" for k, v in figures.items()]
    text = "\n".join(lines)
    REPORTS.append(text)
    print("\n" + text, flush=True)
    return text
