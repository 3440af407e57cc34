"""Real servers for the tests that claim distributed behaviour: started here, on 127.0.0.1.

A program the machine lacks skips the test with a visible reason on a laptop, and fails it under
``CI=true``: CI never skips.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import typing as t
from dataclasses import dataclass

import pytest

__all__ = ["RedisServer", "free_port", "require_program", "start_redis"]


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
