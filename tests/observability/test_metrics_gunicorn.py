"""Prometheus metrics of the example production app under gunicorn with 2 workers, in
prometheus_client's multi-process mode, scraped over HTTP: one scrape sums both workers."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import typing as t
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from yalgaar_receiver.testing import bind, message, message_envelope, presence_envelope

from ..flask.test_deploy_example import stop, wait_for
from ..servers import RedisServer, free_port

ROOT = Path(__file__).parents[2]
KEY = "ck-0123456789abcdef"
TOKEN = "metrics-t0ken-9c2b"
BASE = f"/yalgaar/{TOKEN}"


class Answer(t.NamedTuple):
    status: int
    pid: str
    body: bytes


def exchange(port: int, method: str, path: str, body: bytes = b"") -> Answer:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        headers = {"Content-Type": "application/json", "Connection": "close"}
        connection.request(method, path, body=body or None, headers=headers)
        response = connection.getresponse()
        return Answer(response.status, response.getheader("X-Worker-Pid", ""), response.read())
    finally:
        connection.close()


@pytest.fixture
def fleet(redis_server: RedisServer, tmp_path: Path) -> t.Iterator[int]:
    directory = tmp_path / "prometheus"
    directory.mkdir()
    port = free_port()
    env = {
        **os.environ,
        "YALGAAR_CLIENT_KEYS": KEY,
        "YALGAAR_URL_TOKENS": TOKEN,
        "YALGAAR_REDIS_URL": redis_server.url,
        "YALGAAR_PRESENCE_STATE": "1",
        "YALGAAR_METRICS": "1",
        "PROMETHEUS_MULTIPROC_DIR": str(directory),
    }
    process = subprocess.Popen(
        [
            sys.executable, "-m", "gunicorn",
            "--config", "tests/observability/gunicorn_conf.py",
            "--bind", f"127.0.0.1:{port}",
            "--workers", "2",
            "--timeout", "30",
            "--graceful-timeout", "5",
            "examples.production_app:create_app()",
        ],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        wait_for(port, process)
        yield port
    finally:
        output = stop(process)
        # Handler failures are logged with their tracebacks; nothing else went wrong.
        assert "Error handling request" not in output, output[-3000:]


def test_a_scrape_sums_both_workers_and_every_metric_is_there(fleet: int) -> None:
    port = fleet
    statuses: dict[tuple[str, int], int] = {}
    pids: set[str] = set()

    def send(route: str, body: bytes, method: str = "POST") -> Answer:
        path = f"{BASE}/{route}" if route != "webhook" else f"{BASE}/"
        answer = exchange(port, method, path, body)
        statuses[route, answer.status] = statuses.get((route, answer.status), 0) + 1
        pids.add(answer.pid)
        return answer

    # A request whose body is half sent holds one sync worker, so the other takes what follows;
    # the held one then answers too, and a scrape must add the two up.
    held_body = presence_envelope(bind("lobby", "held"), client_key=KEY).to_bytes()
    held = socket.create_connection(("127.0.0.1", port), timeout=30)
    held.sendall(
        f"POST {BASE}/presence HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        f"Content-Length: {len(held_body)}\r\n\r\n".encode()
        + held_body[:10]
    )
    bodies = [
        presence_envelope(bind("lobby", f"u{n}"), {"channel": None}, client_key=KEY).to_bytes()
        for n in range(10)
    ]
    for body in bodies:
        assert send("presence", body).status == 200
    assert json.loads(send("presence", bodies[0]).body)["duplicates"] == 1
    stranger = presence_envelope(bind("lobby", "eve"), client_key="ck-guessed").to_bytes()
    assert send("presence", stranger).status == 403
    poison = message_envelope(message("orders", "dan", "poison", at=1521609600), client_key=KEY)
    answers = [send("message", poison.to_bytes()).status for _ in range(5)]
    assert answers == [500, 500, 500, 500, 200]  # the fifth attempt is given up: a dead letter
    full = presence_envelope(*(bind("stadium", f"fan{n}") for n in range(200)), client_key=KEY)
    assert send("presence", full.to_bytes()).status == 200
    held.sendall(held_body[10:])
    with held, held.makefile("rb") as answer:
        status_line = answer.readline().decode()
        headers = dict(
            line.decode().rstrip("\r\n").split(": ", 1) for line in iter(answer.readline, b"\r\n")
        )
    assert status_line.split()[1] == "200", status_line
    statuses["presence", 200] += 1
    pids.add(headers["X-Worker-Pid"])
    assert len(pids) == 2, "one worker served everything"

    scrape = exchange(port, "GET", "/metrics")
    assert scrape.status == 200
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(scrape.body.decode())
        for sample in family.samples
    }

    def value(name: str, **labels: str) -> float:
        return samples.get((name, tuple(sorted(labels.items()))), 0.0)

    for (route, status), count in statuses.items():
        assert value("yalgaar_requests_total", route=route, status=str(status)) == count
    assert value("yalgaar_events_total", kind="bind") == 1 + 10 + 1 + 200
    assert value("yalgaar_events_total", kind="message") == 5
    assert value("yalgaar_items_rejected_total", kind="presence") == 11
    assert value("yalgaar_auth_failures_total") == 1
    assert value("yalgaar_duplicates_total") == 1
    assert value("yalgaar_dead_letters_total") == 1
    handler = "__config__.poisoned"  # gunicorn loads its config file as __config__
    assert value("yalgaar_handler_seconds_count", handler=handler) == 5
    assert value("yalgaar_handler_failures_total", handler=handler) == 5
    assert value("yalgaar_batch_items_count") == 1 + 10 + 1 + 5 + 1
    assert value("yalgaar_batch_items_bucket", le="199.0") == 17
    assert value("yalgaar_possible_loss_total") == 1
    assert value("yalgaar_presence_channels") == 2
    assert value("yalgaar_presence_members") == 1 + 10 + 200
    assert value("yalgaar_presence_stale") == 1
    assert ("yalgaar_queue_depth", ()) in samples
