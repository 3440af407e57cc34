"""The pytest plugin, run the way users run it: in a pytest of its own, loaded by entry point."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

# Allowed in a test module (not in a conftest below the root); enables the `pytester` fixture.
pytest_plugins = ["pytester"]

APP = """
from __future__ import annotations

import pytest
from flask import Flask

from yalgaar_receiver import BindEvent, MessageEvent, Receiver, create_blueprint
from yalgaar_receiver.testing import bind, message, message_envelope, presence_envelope

KEY = "ck-0123456789abcdef"
receiver = Receiver(client_keys=[KEY])
greeted = []


@receiver.on_bind
def greet(event):
    greeted.append(event.uuid)


@receiver.on_message(channel="orders")
def order(event):
    if event.json()["qty"] < 0:
        raise ValueError("negative quantity")


@pytest.fixture
def app():
    app = Flask(__name__)
    app.config["YALGAAR_URL_TOKENS"] = "s3cret"
    app.register_blueprint(create_blueprint(receiver), url_prefix="/hooks")
    return app
"""


def run(pytester: pytest.Pytester, tests: str, *args: str) -> pytest.RunResult:
    pytester.makepyfile(test_user=APP + textwrap.dedent(tests))
    return pytester.runpytest("-p", "no:cacheprovider", *args)


def test_fixtures_post_and_capture(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        def test_bind(yalgaar_client, yalgaar_events):
            response = yalgaar_client.post(
                presence_envelope(bind("lobby", "alice", at=1521609600), client_key=KEY)
            )
            assert response.status_code == 200
            assert response.json["accepted"] == 1
            assert [e.uuid for e in yalgaar_events.of_type(BindEvent)] == ["alice"]
            assert greeted == ["alice"]

        def test_failure_is_a_500(yalgaar_client, yalgaar_events):
            body = message_envelope(message("orders", "bob", {"qty": -1}), client_key=KEY)
            response = yalgaar_client.post(body)
            assert response.status_code == 500
            assert str(yalgaar_events.failures[0].error) == "negative quantity"
            assert yalgaar_events.of_type(MessageEvent)[0].uuid == "bob"

        def test_routes_follow_the_source_and_carry_the_token(yalgaar_client):
            assert yalgaar_client.url_for("presence") == "/hooks/s3cret/presence"
            assert yalgaar_client.url_for("message") == "/hooks/s3cret/message"
            assert yalgaar_client.url_for(None) == "/hooks/s3cret/"
            assert yalgaar_client.url_for("presence", token="") == "/hooks/presence"
            assert yalgaar_client.url_for("presence", token="a/b") == "/hooks/a%2Fb/presence"

        def test_without_the_token_a_request_is_refused(yalgaar_client, yalgaar_events):
            body = presence_envelope(bind("lobby", "alice"), client_key=KEY)
            assert yalgaar_client.post(body, token="").status_code == 403
            assert yalgaar_client.post(body, token="guess").status_code == 403
            assert yalgaar_events.events == []

        def test_raw_bytes_and_wrong_key(yalgaar_client, yalgaar_events):
            assert yalgaar_client.post(b"{not json").status_code == 400
            body = presence_envelope(bind("lobby", "eve"), client_key="ck-wrong")
            assert yalgaar_client.post(body).status_code == 403
            assert len(yalgaar_events.refusals) == 2
            assert yalgaar_events.events == []
        """,
    )
    result.assert_outcomes(passed=5)


def test_capture_ends_with_the_test(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        from yalgaar_receiver import signals

        def test_one(yalgaar_events):
            assert signals.message.receivers

        def test_two():
            assert not signals.message.receivers
        """,
    )
    result.assert_outcomes(passed=2)


def test_missing_app_fixture_is_one_clear_failure(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_noapp="""
        def test_needs_app(yalgaar_client):
            pass
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*define a fixture named 'app'*"])


def test_plugin_is_registered_by_entry_point(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--fixtures", "-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(["*yalgaar_client*", "*yalgaar_events*"])
    blocked = pytester.runpytest("--fixtures", "-p", "no:yalgaar", "-p", "no:cacheprovider")
    assert "yalgaar_client" not in blocked.stdout.str()


def test_loading_the_plugin_imports_neither_flask_nor_the_core() -> None:
    # A fresh interpreter: in this one, the tests have imported everything already. pytest loads
    # the plugin in every run of the environment, other projects' runs included: it brings
    # pytest and the package's __init__, which imports each public name on first use.
    heavy = ("flask", "werkzeug", "marshmallow", "blinker", "yalgaar_receiver.receiver")
    code = (
        "import sys, yalgaar_receiver.pytest_plugin; "
        f"print(sorted(m for m in {heavy!r} if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"


def test_client_with_several_blueprints_must_be_told_which(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        from yalgaar_receiver.flask import WebhookClient

        def test_two(app):
            other = Receiver(client_keys=["ck-other"])
            second = create_blueprint(other, name="second", allow_client_key_only=True)
            app.register_blueprint(second, url_prefix="/two")
            client = WebhookClient(app)
            with pytest.raises(LookupError, match="several receiver blueprints"):
                client.url_for("presence")
            # The app-wide YALGAAR_URL_TOKENS protect the second blueprint too.
            assert client.url_for("message", blueprint="second") == "/two/s3cret/message"
            body = presence_envelope(bind("c", "u"), client_key="ck-other")
            assert client.post(body, blueprint="second").status_code == 200
            assert client.post(body, blueprint="yalgaar").status_code == 403
            assert client.url_for(blueprint="yalgaar") == "/hooks/s3cret/"
            with pytest.raises(LookupError, match="no receiver blueprint named 'third'"):
                client.url_for(blueprint="third")

        def test_none(yalgaar_app):
            pass

        def test_app_without_blueprint():
            with pytest.raises(LookupError, match="create_blueprint"):
                WebhookClient(Flask("bare")).url_for()
        """,
    )
    result.assert_outcomes(passed=3)
