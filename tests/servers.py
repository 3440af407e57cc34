"""Real servers for the tests that claim distributed behaviour: started here, on 127.0.0.1.

A program the machine lacks skips the test with a visible reason on a laptop, and fails it under
``CI=true``: CI never skips.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import typing as t
from dataclasses import dataclass

import pytest

if t.TYPE_CHECKING:
    import redis

__all__ = [
    "RedisCluster",
    "RedisServer",
    "RoundTripCounter",
    "free_port",
    "require_program",
    "start_redis",
    "start_redis_cluster",
]


def require_program(name: str) -> str:
    """The path of ``name``; skip (or fail, in CI) when it is not installed."""
    path = shutil.which(name)
    if path is None:
        reason = f"{name} is not installed (Debian package: see .ci/run)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI must not skip", pytrace=False)
        pytest.skip(reason)
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RedisServer:
    """A ``redis-server`` process of the test's own; :meth:`stop` and :meth:`start` simulate
    an outage on the same port."""

    port: int
    directory: str
    cluster: bool = False
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        program = require_program("redis-server")
        self.process = subprocess.Popen(
            [
                program,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", self.directory,
                "--protected-mode", "yes",
                *(["--cluster-enabled", "yes", "--cluster-node-timeout", "5000"]
                  if self.cluster else []),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis-server did not answer on port {self.port} in {timeout} s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None


def start_redis() -> t.Iterator[RedisServer]:
    """Generator for a fixture: a started server, stopped and cleaned up afterwards."""
    with tempfile.TemporaryDirectory(prefix="yalgaar-redis-") as directory:
        server = RedisServer(port=free_port(), directory=directory)
        server.start()
        try:
            yield server
        finally:
            server.stop()


#: Redis Cluster talks to each node on its port + 10000 (the cluster bus): both must be free.
_BUS_OFFSET: t.Final = 10_000


def _cluster_port() -> int:
    """A port whose cluster-bus port is free too (ephemeral ports + 10000 may not exist)."""
    for _ in range(200):
        port = random.randint(20_000, 40_000)
        try:
            for candidate in (port, port + _BUS_OFFSET):
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                    sock.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port
    raise RuntimeError("no free pair of ports for a Redis Cluster node")


@dataclass
class RedisCluster:
    """Three ``redis-server --cluster-enabled yes`` masters on 127.0.0.1, joined into one cluster
    of 16384 slots by ``redis-cli --cluster create`` (no replicas)."""

    nodes: list[RedisServer]

    @property
    def ports(self) -> list[int]:
        return [node.port for node in self.nodes]

    def client(self, **options: t.Any) -> t.Any:
        """A redis-py ``RedisCluster`` on the first node; it finds the others itself."""
        import redis.cluster

        return redis.cluster.RedisCluster(
            host="127.0.0.1", port=self.ports[0], socket_timeout=5, **options
        )

    def flush(self) -> None:
        import redis

        for port in self.ports:
            with redis.Redis(host="127.0.0.1", port=port) as node:
                node.flushall()


def start_redis_cluster(timeout: float = 30.0) -> t.Iterator[RedisCluster]:
    """Generator for a fixture: a 3-master cluster, stopped and cleaned up afterwards."""
    cli = require_program("redis-cli")
    with tempfile.TemporaryDirectory(prefix="yalgaar-cluster-") as directory:
        nodes: list[RedisServer] = []
        try:
            for number in range(3):
                own = os.path.join(directory, str(number))
                os.mkdir(own)
                node = RedisServer(port=_cluster_port(), directory=own, cluster=True)
                node.start()
                nodes.append(node)
            subprocess.run(
                [cli, "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in nodes),
                 "--cluster-replicas", "0", "--cluster-yes"],
                check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=timeout,
            )  # fmt: skip
            _wait_until_ok(cli, nodes, timeout)
            yield RedisCluster(nodes)
        finally:
            for node in nodes:
                node.stop()


def _wait_until_ok(cli: str, nodes: t.Sequence[RedisServer], timeout: float) -> None:
    """Until every node says ``cluster_state:ok`` (each has learnt every slot's owner)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = [
            subprocess.run(
                [cli, "-h", "127.0.0.1", "-p", str(node.port), "cluster", "info"],
                capture_output=True, text=True, timeout=5,
            ).stdout
            for node in nodes
        ]  # fmt: skip
        if all("cluster_state:ok" in state for state in states):
            return
        time.sleep(0.1)
    raise RuntimeError(f"the Redis Cluster was not ready in {timeout} s")


class RoundTripCounter:
    """Counts the requests the clients it builds send, one per round trip: each
    ``send_packed_command`` is one request the client then waits on (a command, or a whole
    pipeline)."""

    def __init__(self) -> None:
        self.trips = 0
        self._lock = threading.Lock()

    def client(self, url: str) -> redis.Redis:
        import redis  # only the tests that count need it

        counter = self

        class CountingConnection(redis.Connection):
            def send_packed_command(self, command: t.Any, check_health: bool = True) -> None:
                with counter._lock:
                    counter.trips += 1
                super().send_packed_command(command, check_health)  # type: ignore[no-untyped-call]

        pool = redis.ConnectionPool.from_url(url, connection_class=CountingConnection)
        connection = redis.Redis(connection_pool=pool, socket_timeout=5)
        connection.ping()  # connected (HELLO and the rest of the handshake) before counting
        self.trips = 0
        return connection
