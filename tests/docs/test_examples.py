"""The examples run: imported, posted to, and the demo executed, so they never rot."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from yalgaar_receiver import YalgaarSecurityWarning

from ..payloads import KEY, payload

EXAMPLES = Path(__file__).parents[2] / "examples"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_minimal_app(capsys: pytest.CaptureFixture[str]) -> None:
    # The README's snippet relies on the client key alone, and says so at start-up.
    with pytest.warns(YalgaarSecurityWarning, match="clientKey alone"):
        client = load("minimal_app").app.test_client()
    assert client.post("/yalgaar/presence", data=payload("presence-bind.json")).status_code == 200
    body = b'{"items": {"source": "Message", "clientKey": "%s", "data": [' % KEY.encode()
    body += b'{"channel": "orders-7", "uuid": "u", "timestamp": "1", "message": "{\\"id\\": 7}"}]}}'
    assert client.post("/yalgaar/message", data=body).status_code == 200
    out = capsys.readouterr().out
    assert "User-1a2b3c4d joined lobby at 2018-03-21 05:20:00+00:00" in out
    assert "{'id': 7}" in out


def test_factory_app_reads_keys_from_config() -> None:
    module = load("factory_app")
    app = module.create_app(
        {"YALGAAR_CLIENT_KEYS": f"ck-old0000000000000,{KEY}", "YALGAAR_URL_TOKENS": "t0ken"}
    )
    client = app.test_client()
    assert (
        client.post("/webhooks/yalgaar/presence", data=payload("presence-bind.json")).status_code
        == 403
    )
    assert (
        client.post(
            "/webhooks/yalgaar/t0ken/presence", data=payload("presence-bind.json")
        ).status_code
        == 200
    )
    assert [e.uuid for e in app.extensions["seen_events"]] == ["User-1a2b3c4d"]
    assert (
        client.post("/webhooks/yalgaar/t0ken/", data=payload("client-key-wrong.json")).status_code
        == 403
    )


def test_factory_app_without_keys_fails_at_start() -> None:
    from yalgaar_receiver import ConfigurationError

    with pytest.raises(ConfigurationError):
        load("factory_app").create_app({"YALGAAR_CLIENT_KEYS": ""})


def test_demo_runs_and_ends_by_itself() -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "demo.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "handler: alice joined #lobby" in result.stdout
    assert "handler: order on #orders-42: {'item': 'tea', 'qty': 2}" in result.stdout
    assert "rejected envelope 0 item 1" in result.stdout
    assert "-> 403" in result.stdout
    assert "Done: 6 requests" in result.stdout
