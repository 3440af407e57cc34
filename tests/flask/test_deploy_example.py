"""The gunicorn deployment in ``examples/deploy_gunicorn`` boots, answers and stops, for real."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from yalgaar_receiver.testing import bind, presence_envelope

from ..servers import free_port

ROOT = Path(__file__).parents[2]
KEY = "ck-0123456789abcdef"
TOKEN = "3f0c9d2a5b7e4c1f8a6d0b9e2c4f7a1d"
COMMAND = [
    str(Path(sys.executable).with_name("gunicorn")),
    "-c", "examples/deploy_gunicorn/gunicorn_conf.py",
    "examples.deploy_gunicorn.wsgi:create_app()",
]  # fmt: skip


def post(url: str, body: bytes) -> int:
    request = urllib.request.Request(url, data=body, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def wait_for(port: int, process: subprocess.Popen[str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "gunicorn exited early"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"gunicorn did not listen on {port} within {timeout} s")


def test_gunicorn_serves_the_receiver() -> None:
    port = free_port()
    env = {
        **os.environ,
        "YALGAAR_CLIENT_KEYS": KEY,
        "YALGAAR_URL_TOKENS": TOKEN,
        "BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "1",
    }
    process = subprocess.Popen(
        COMMAND, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        wait_for(port, process)
        base = f"http://127.0.0.1:{port}/yalgaar"
        good = presence_envelope(bind("lobby", "alice"), client_key=KEY).to_bytes()
        bad = presence_envelope(bind("lobby", "eve"), client_key="ck-guessed").to_bytes()
        assert post(f"{base}/{TOKEN}/presence", good) == 200
        assert post(f"{base}/{TOKEN}/presence", bad) == 403
        assert post(f"{base}/presence", good) == 403  # no token in the URL
    finally:
        output = stop(process)
    assert process.returncode == 0, output
    assert "presence: alice bind lobby" in output
    assert "Refused a webhook request" in output
    # No secret in any log line, the access log included.
    assert KEY not in output and TOKEN not in output
    assert '"POST HTTP/1.1" 200' in output


def test_gunicorn_without_keys_does_not_boot() -> None:
    env = {k: v for k, v in os.environ.items() if k != "YALGAAR_CLIENT_KEYS"}
    env.update(BIND=f"127.0.0.1:{free_port()}", WEB_CONCURRENCY="1", YALGAAR_URL_TOKENS=TOKEN)
    result = subprocess.run(COMMAND, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "The receiver has no client key" in result.stdout + result.stderr


def stop(process: subprocess.Popen[str]) -> str:
    """Terminate a server process, kill it if it lingers, and return its output."""
    process.terminate()
    try:
        output, _ = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate(timeout=30)
    return output
