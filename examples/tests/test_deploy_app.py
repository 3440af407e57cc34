"""Tests of the app that ``examples/deploy_gunicorn`` serves (gunicorn itself is smoke-tested in
``tests/test_deploy_example.py``)."""

from __future__ import annotations

import logging

import pytest
from flask import Flask

from examples.deploy_gunicorn.wsgi import create_app
from yalgaar_receiver import ConfigurationError
from yalgaar_receiver.flask import WebhookClient
from yalgaar_receiver.testing import bind, message, message_envelope, presence_envelope

KEY = "ck-0123456789abcdef"


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch) -> Flask:
    monkeypatch.setenv("YALGAAR_CLIENT_KEYS", KEY)
    monkeypatch.setenv("YALGAAR_URL_TOKENS", "a-long-random-token")
    return create_app()


def test_events_are_logged(yalgaar_client: WebhookClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="yalgaar_example"):
        presence = presence_envelope(bind("lobby", "alice"), client_key=KEY)
        assert yalgaar_client.post(presence).status_code == 200
        chat = message_envelope(message("lobby", "alice", "hello"), client_key=KEY)
        assert yalgaar_client.post(chat).status_code == 200
    assert caplog.messages == [
        "presence: alice bind lobby",
        "message: alice on lobby: 5 characters",
    ]


def test_the_url_carries_the_token(yalgaar_client: WebhookClient) -> None:
    assert yalgaar_client.url_for("presence") == "/yalgaar/a-long-random-token/presence"
    body = presence_envelope(bind("lobby", "mallory"), client_key=KEY)
    assert yalgaar_client.post(body, token="").status_code == 403


def test_without_keys_the_app_does_not_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("YALGAAR_CLIENT_KEYS", raising=False)
    monkeypatch.setenv("YALGAAR_URL_TOKENS", "a-long-random-token")
    with pytest.raises(ConfigurationError, match="The receiver has no client key"):
        create_app()


def test_without_a_token_the_app_does_not_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YALGAAR_CLIENT_KEYS", KEY)
    monkeypatch.delenv("YALGAAR_URL_TOKENS", raising=False)
    with pytest.raises(ConfigurationError, match="YALGAAR_URL_TOKENS is not set"):
        create_app()
