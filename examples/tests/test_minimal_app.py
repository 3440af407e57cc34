"""Tests of ``examples/minimal_app.py`` written with the test kit and its pytest fixtures.

``yalgaar_client`` posts to the ``app`` fixture below, to the route Yalgaar would use;
``yalgaar_events`` records what the receiver did. Copy this file to start your own tests.
"""

from __future__ import annotations

import importlib
import warnings

import pytest
from flask import Flask

from yalgaar_receiver import AuthenticationError, BindEvent, MessageEvent, YalgaarSecurityWarning
from yalgaar_receiver.flask import WebhookClient
from yalgaar_receiver.testing import Capture, bind, message, message_envelope, presence_envelope

KEY = "ck-0123456789abcdef"


@pytest.fixture
def app() -> Flask:
    # The README's snippet relies on clientKey alone and warns about it when it starts
    # (tests/test_examples.py checks that); these tests are about its handlers.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", YalgaarSecurityWarning)
        minimal_app = importlib.import_module("examples.minimal_app")
    app: Flask = minimal_app.app
    return app


def test_a_bind_is_handled(
    yalgaar_client: WebhookClient, yalgaar_events: Capture, capsys: pytest.CaptureFixture[str]
) -> None:
    body = presence_envelope(bind("lobby", "alice", at=1521609600), client_key=KEY)
    response = yalgaar_client.post(body)
    assert response.status_code == 200
    assert [e.uuid for e in yalgaar_events.of_type(BindEvent)] == ["alice"]
    assert "alice joined lobby at 2018-03-21 05:20:00+00:00" in capsys.readouterr().out


def test_only_orders_are_decoded(
    yalgaar_client: WebhookClient, yalgaar_events: Capture, capsys: pytest.CaptureFixture[str]
) -> None:
    body = message_envelope(
        message("orders-7", "bob", {"id": 7}),
        message("lobby", "bob", "not an order"),
        client_key=KEY,
    )
    assert yalgaar_client.post(body).status_code == 200
    assert [e.channel for e in yalgaar_events.of_type(MessageEvent)] == ["orders-7", "lobby"]
    assert capsys.readouterr().out == "{'id': 7}\n"


def test_an_order_in_plain_text_is_printed_as_it_came(
    yalgaar_client: WebhookClient, yalgaar_events: Capture, capsys: pytest.CaptureFixture[str]
) -> None:
    body = message_envelope(message("orders-8", "bob", "tea please"), client_key=KEY)
    assert yalgaar_client.post(body).status_code == 200
    assert yalgaar_events.failures == []
    assert capsys.readouterr().out == "tea please\n"


def test_a_stranger_is_refused(yalgaar_client: WebhookClient, yalgaar_events: Capture) -> None:
    body = presence_envelope(bind("lobby", "eve"), client_key="ck-guessed")
    assert yalgaar_client.post(body).status_code == 403
    assert isinstance(yalgaar_events.refusals[0], AuthenticationError)
    assert yalgaar_events.events == []
