"""Smoke test of ``examples/production_app.py``: the app ``tests/load`` runs under gunicorn."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from ..payloads import KEY, payload
from ..servers import RedisServer

EXAMPLE = Path(__file__).parents[2] / "examples" / "production_app.py"


def test_production_app_from_the_environment(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("YALGAAR_CLIENT_KEYS", KEY)
    monkeypatch.setenv("YALGAAR_URL_TOKENS", "t0ken")
    monkeypatch.setenv("YALGAAR_REDIS_URL", redis_server.url)
    spec = importlib.util.spec_from_file_location("example_production_app", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # A URL token is configured, so no YalgaarSecurityWarning (which would fail this test).
    client = module.create_app().test_client()
    body = payload("presence-bind.json")
    assert client.post("/yalgaar/presence", data=body).status_code == 403
    first = client.post("/yalgaar/t0ken/presence", data=body)
    again = client.post("/yalgaar/t0ken/presence", data=body)
    assert (first.status_code, again.status_code) == (200, 200)
    assert first.get_json()["duplicates"] == 0
    assert again.get_json()["duplicates"] == first.get_json()["accepted"] > 0


def test_the_metrics_answer_the_metrics_networks_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YALGAAR_CLIENT_KEYS", KEY)
    monkeypatch.setenv("YALGAAR_URL_TOKENS", "t0ken")
    monkeypatch.setenv("YALGAAR_METRICS", "1")
    monkeypatch.setenv("YALGAAR_METRICS_NETWORKS", "10.0.0.0/8")
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    spec = importlib.util.spec_from_file_location("example_production_app", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    client = module.create_app().test_client()
    outside = client.get("/metrics", environ_base={"REMOTE_ADDR": "203.0.113.7"})
    inside = client.get("/metrics", environ_base={"REMOTE_ADDR": "10.1.2.3"})
    assert outside.status_code == 404
    assert inside.status_code == 200 and b"yalgaar_requests_total" in inside.data
