"""Tests of ``examples/factory_app.py``: an app factory tested with the kit's fixtures."""

from __future__ import annotations

import logging

import pytest
from flask import Flask

from examples.factory_app import create_app
from yalgaar_receiver import Event, MessageEvent, UnbindEvent
from yalgaar_receiver.flask import WebhookClient
from yalgaar_receiver.testing import (
    Capture,
    bind,
    message,
    message_envelope,
    presence_envelope,
    unbind,
)

OLD_KEY = "ck-old0000000000000"
NEW_KEY = "ck-0123456789abcdef"


@pytest.fixture
def app() -> Flask:
    # Two keys while one is being rotated out; the factory reads them from the config.
    # yalgaar_client posts to the URL with the token, as the URL given to Yalgaar would be.
    return create_app({"YALGAAR_CLIENT_KEYS": f"{OLD_KEY},{NEW_KEY}", "YALGAAR_URL_TOKENS": "t0k"})


def seen(app: Flask) -> list[Event]:
    events: list[Event] = app.extensions["seen_events"]
    return events


def test_both_keys_are_accepted_during_a_rotation(
    app: Flask, yalgaar_client: WebhookClient
) -> None:
    for key in (OLD_KEY, NEW_KEY):
        body = presence_envelope(bind("lobby", "alice"), unbind("lobby", "alice"), client_key=key)
        assert yalgaar_client.post(body).status_code == 200
    assert [type(e).__name__ for e in seen(app)] == ["BindEvent", "UnbindEvent"] * 2


def test_without_the_url_token_nothing_gets_in(
    yalgaar_client: WebhookClient, yalgaar_events: Capture
) -> None:
    body = presence_envelope(bind("lobby", "mallory"), client_key=NEW_KEY)
    assert yalgaar_client.post(body, token="").status_code == 403
    assert yalgaar_events.events == []
    (refusal,) = yalgaar_events.refusals
    assert "url_token" in str(refusal)


def test_chat_messages_are_logged_json_or_not(
    app: Flask,
    yalgaar_client: WebhookClient,
    yalgaar_events: Capture,
    caplog: pytest.LogCaptureFixture,
) -> None:
    body = message_envelope(
        message("chat-1", "bob", {"text": "hi"}),
        message("chat-1", "bob", "plain"),
        message("news", "bob", "not chat"),
        client_key=NEW_KEY,
    )
    with caplog.at_level(logging.INFO, logger="factory_app"):
        assert yalgaar_client.post(body).status_code == 200
    assert [r.getMessage() for r in caplog.records if r.name == "factory_app"] == [
        "bob said {'text': 'hi'} on chat-1",
        "bob said 'plain' on chat-1",
    ]
    assert len(yalgaar_events.of_type(MessageEvent)) == 3  # all arrive, two are handled
    assert len(seen(app)) == 2


def test_a_malformed_item_does_not_cost_the_others(
    app: Flask, yalgaar_client: WebhookClient, yalgaar_events: Capture
) -> None:
    body = presence_envelope(
        unbind("lobby", "carol"),
        {"uuid": "nobody", "timestamp": "1521609600", "action": "unbind"},
        client_key=NEW_KEY,
    )
    response = yalgaar_client.post(body)
    assert response.status_code == 200
    assert response.json is not None and response.json["accepted"] == 1
    assert [r.index for r in yalgaar_events.rejections] == [1]
    assert [e.uuid for e in yalgaar_events.of_type(UnbindEvent)] == ["carol"]
