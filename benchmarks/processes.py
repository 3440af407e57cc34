"""The servers the benchmarks start on 127.0.0.1, and the CPU time their processes use.

Every server is started by the benchmark and stopped after it, whatever happened. CPU time is
read from ``/proc`` (user and system time): a figure that other users of the machine slow down
far less than requests per second.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import typing as t
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int, *, children: bool = True, own: bool = True) -> float:
    """User and system time of ``pid`` (``own``) and of its descendants (``children``), those
    alive now."""
    total = 0
    if own:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    seconds = total / os.sysconf("SC_CLK_TCK")
    if children:
        with contextlib.suppress(OSError):
            for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
                seconds += cpu_seconds(int(child))
    return seconds


@dataclass
class GunicornServer:
    """A running gunicorn: its port, and the CPU time its workers have used so far."""

    port: int
    master: int

    def cpu_seconds(self) -> float:
        """User and system time of the workers; the master only waits."""
        return cpu_seconds(self.master, own=False)


def _wait_for_port(process: subprocess.Popen[bytes], port: int, what: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not listen on port {port} in 30 s")
        time.sleep(0.1)


def _stop(process: subprocess.Popen[bytes], *, group: bool = False) -> None:
    """Ask ``process`` (its whole session, with ``group``) to stop; kill it after 15 s."""
    if process.poll() is None:
        if group:
            os.killpg(process.pid, signal.SIGTERM)
        else:
            process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        if group:
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.kill()
        process.wait(timeout=15)


@contextlib.contextmanager
def gunicorn(
    app: str, workers: int, env: t.Mapping[str, str] | None = None
) -> t.Iterator[GunicornServer]:
    """A gunicorn with ``workers`` sync workers serving ``app`` on 127.0.0.1; stopped after."""
    program = Path(sys.executable).with_name("gunicorn")
    port = free_port()
    process = subprocess.Popen(
        [
            str(program), "--workers", str(workers), "--worker-class", "sync",
            "--bind", f"127.0.0.1:{port}", "--log-level", "warning", "--chdir", str(HERE),
            app,
        ],
        stdout=subprocess.DEVNULL,
        env=None if env is None else {**os.environ, **env},
    )  # fmt: skip
    try:
        _wait_for_port(process, port, f"gunicorn {app}")
        time.sleep(0.5 * workers)  # let every worker boot, not only the first
        yield GunicornServer(port, process.pid)
    finally:
        _stop(process)


@dataclass
class RedisProcess:
    """A running ``redis-server``: its URL, and its process for the CPU time."""

    url: str
    pid: int

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid, children=False)


@contextlib.contextmanager
def redis_server() -> t.Iterator[RedisProcess]:
    """A ``redis-server`` on a free port of 127.0.0.1, without persistence; stopped after."""
    program = shutil.which("redis-server")
    if program is None:
        raise RuntimeError(
            "redis-server is not installed; on Debian or Ubuntu: apt-get install redis-server"
        )
    port = free_port()
    process = subprocess.Popen(
        [program, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    try:
        _wait_for_port(process, port, "redis-server")
        yield RedisProcess(f"redis://127.0.0.1:{port}/0", process.pid)
    finally:
        _stop(process)


@dataclass
class CeleryWorker:
    """A running ``celery worker``, in its own session so that a stop reaches its pool."""

    pid: int

    def cpu_seconds(self) -> float:
        """The main process (it takes the messages from the broker) and its pool's."""
        return cpu_seconds(self.pid)


@contextlib.contextmanager
def celery_worker(
    app: str, queue: str, concurrency: int, env: t.Mapping[str, str]
) -> t.Iterator[CeleryWorker]:
    """A prefork worker with ``concurrency`` processes consuming ``queue``; stopped after.

    It logs warnings only (a line per task would cost the worker more than a no-op task); the
    caller knows it consumes when a first task has run."""
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", app, "worker", "--pool", "prefork",
         "--concurrency", str(concurrency), "-Q", queue, "--without-gossip",
         "--without-mingle", "--without-heartbeat", "--loglevel", "WARNING"],
        cwd=HERE,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        yield CeleryWorker(process.pid)
    finally:
        _stop(process, group=True)
