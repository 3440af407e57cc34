"""The edges of the HTTP contract over real HTTP, under gunicorn with the gthread workers that
docs/deployment.md recommends: each case here answered wrongly before, and must answer as
documented.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import typing as t
from dataclasses import dataclass
from pathlib import Path

import pytest

from yalgaar_receiver.testing import message, message_envelope

from ..servers import free_port
from .edge_app import KEY, TOKEN
from .test_deploy_example import stop, wait_for

ROOT = Path(__file__).parents[2]
WAIT = 30.0


@dataclass
class Gunicorn:
    process: subprocess.Popen[str]
    port: int
    record: Path
    dead_letters: Path

    def recorded(self) -> list[str]:
        return self.record.read_text().splitlines() if self.record.exists() else []


def start(tmp_path: Path, **environment: str) -> Gunicorn:
    port = free_port()
    record, dead_letters = tmp_path / "record.txt", tmp_path / "dead.jsonl"
    env = {
        **os.environ,
        "BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "1",
        "THREADS": "2",
        "EDGE_RECORD": str(record),
        "EDGE_DEAD_LETTERS": str(dead_letters),
        **environment,
    }
    process = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("gunicorn")),
            "-c", "examples/deploy_gunicorn/gunicorn_conf.py",
            "tests.flask.edge_app:create_app()",
        ],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    wait_for(port, process)
    return Gunicorn(process, port, record, dead_letters)


@pytest.fixture
def server(tmp_path: Path) -> t.Iterator[Gunicorn]:
    running = start(tmp_path)
    try:
        yield running
    finally:
        stop(running.process)


def exchange(
    port: int, request: bytes, *, half_close: bool = False
) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes; the status, the headers and the body of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        sock.sendall(request)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
        length = int(headers.get("Content-Length", "0"))
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
    return int(lines[0].split()[1]), headers, body


def post(
    port: int, path: str, body: bytes, method: str = "POST"
) -> tuple[int, dict[str, str], bytes]:
    request = (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body
    return exchange(port, request)


def envelope(*items: dict[str, object]) -> bytes:
    return message_envelope(*items, client_key=KEY).to_bytes()


URL = f"/yalgaar/{TOKEN}/message"


# -- 1: dates out of range -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "stamp", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "1" + "0" * 30]
)
def test_a_date_out_of_range_is_a_rejected_item_not_a_500(server: Gunicorn, stamp: str) -> None:
    good = message("ok", "u1", "fine", at=1521609600)
    bad = {**message("ok", "u2", "late"), "timestamp": stamp}
    status, _headers, body = post(server.port, URL, envelope(good, bad))
    assert status == 200, body
    answer = json.loads(body)
    assert answer["accepted"] == 1 and answer["rejected"][0]["index"] == 1
    assert "out of range" in answer["rejected"][0]["errors"]["timestamp"][0]


# -- 3: malformed chunked framing ----------------------------------------------------------------


def chunked(framing: bytes) -> bytes:
    return (
        f"POST {URL} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    ).encode() + framing


@pytest.mark.parametrize(
    ("framing", "half_close"),
    [
        (b"zz\r\n{}\r\n0\r\n\r\n", False),  # a chunk size that is not hex
        (b"-5\r\n{}\r\n0\r\n\r\n", False),  # a negative size
        (b"10\r\n{}\r\n0\r\n\r\n", True),  # a size that does not match its data
        (b"2\r\n{}\r\n", True),  # no last chunk
    ],
)
def test_broken_chunked_framing_is_400_without_a_traceback(
    server: Gunicorn, framing: bytes, half_close: bool
) -> None:
    status, headers, body = exchange(server.port, chunked(framing), half_close=half_close)
    assert status == 400, body
    assert headers["Content-Type"] == "application/problem+json"
    assert "could not be read" in json.loads(body)["detail"]
    output = stop(server.process)
    assert "Traceback" not in output and "[ERROR]" not in output, output


# -- 4 and 5: methods and paths ------------------------------------------------------------------


@pytest.mark.parametrize("path", [URL, "/yalgaar/wrong-token/message", "/yalgaar/"])
def test_options_is_405_whatever_the_token(server: Gunicorn, path: str) -> None:
    status, headers, body = post(server.port, path, b"", method="OPTIONS")
    assert status == 405, body
    assert headers["Allow"] == "GET, HEAD, POST"
    assert headers["Content-Type"] == "application/problem+json"


@pytest.mark.parametrize("path", [f"/yalgaar/{TOKEN}//message", "/yalgaar//message"])
def test_a_double_slash_is_a_404_that_neither_redirects_nor_echoes(
    server: Gunicorn, path: str
) -> None:
    status, headers, body = post(server.port, path, envelope(message("ok", "u", "x")))
    assert status == 404, body
    assert "Location" not in headers
    assert TOKEN.encode() not in body and headers["Content-Type"] == "application/problem+json"


# -- 7: a cancelled async handler ----------------------------------------------------------------


def test_a_cancelled_async_handler_is_a_handler_failure(server: Gunicorn) -> None:
    status, _, body = post(server.port, URL, envelope(message("cancel", "u1", "x")))
    assert status == 500 and json.loads(body)["failed"] == 1
    # The worker is alive and answers the next request.
    status, _, body = post(server.port, URL, envelope(message("ok", "u2", "x")))
    assert status == 200, body
    assert server.recorded() == ["cancel u1", "ok u2"]
    output = stop(server.process)
    assert "CancelledError" in output  # logged as the handler's failure
    assert "Worker exiting" not in output or server.process.returncode == 0


# -- 6: the thread pool survives any exception from a handler -------------------------------------


def test_the_pool_survives_system_exit_and_drains_on_sigterm(tmp_path: Path) -> None:
    running = start(tmp_path, EDGE_POOL="1", EDGE_SLOW="0.3")
    try:
        assert post(running.port, URL, envelope(message("exit", "u1", "x")))[0] == 200
        assert post(running.port, URL, envelope(message("ok", "u2", "x")))[0] == 200
        deadline = time.monotonic() + WAIT
        while "ok u2" not in running.recorded():
            assert time.monotonic() < deadline, "the handler after SystemExit never ran"
            time.sleep(0.05)
        # Queued behind slow work, then SIGTERM: the process stops, and the queue drains.
        slow = [message("slow", f"s{n}", "x") for n in range(4)]
        assert post(running.port, URL, envelope(*slow))[0] == 200
        running.process.send_signal(signal.SIGTERM)
        output, _ = running.process.communicate(timeout=WAIT)
    finally:
        if running.process.poll() is None:
            output = stop(running.process)
    assert running.process.returncode == 0, output
    assert [line for line in running.recorded() if line.startswith("slow")] == [
        f"slow s{n}" for n in range(4)
    ]
    assert "SystemExit" in output and "the worker goes on" in output
    # The event whose handler raised SystemExit is a dead letter, not lost.
    [letter] = [json.loads(line) for line in running.dead_letters.read_text().splitlines()]
    assert letter["event"]["channel"] == "exit" and letter["error"].startswith("SystemExit")
