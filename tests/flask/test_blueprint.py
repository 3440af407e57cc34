"""The HTTP contract, through Flask's test client."""

from __future__ import annotations

import io
import json
import typing as t

import pytest
from flask import Flask
from flask.testing import FlaskClient

from yalgaar_receiver import (
    AuthenticationError,
    BindEvent,
    ConfigurationError,
    Event,
    InvalidEnvelopeError,
    PayloadTooLargeError,
    Receiver,
    YalgaarSecurityWarning,
    create_blueprint,
    signals,
)
from yalgaar_receiver.flask import WebhookClient, blueprint_settings

from ..payloads import KEY, payload

PROBLEM = "application/problem+json"


def make_app(receiver: Receiver, prefix: str | None = "/yalgaar", **config: t.Any) -> Flask:
    app = Flask(__name__)
    # These tests are about the HTTP contract with client keys; the security warning and the
    # other layers are tested in test_auth.py.
    app.config["YALGAAR_ALLOW_CLIENT_KEY_ONLY"] = True
    app.config.update(config)
    app.register_blueprint(create_blueprint(receiver), url_prefix=prefix)
    return app


@pytest.fixture
def receiver() -> Receiver:
    return Receiver(client_keys=[KEY])


@pytest.fixture
def client(receiver: Receiver) -> FlaskClient:
    return make_app(receiver).test_client()


def test_presence_url_dispatches_and_answers_a_summary(
    receiver: Receiver, client: FlaskClient
) -> None:
    seen: list[BindEvent] = []
    receiver.on_bind(seen.append)
    response = client.post("/yalgaar/presence", data=payload("presence-bind.json"))
    assert response.status_code == 200
    assert response.json == {"accepted": 1, "rejected": [], "failed": 0}
    assert [e.uuid for e in seen] == ["User-1a2b3c4d"]


@pytest.mark.parametrize(
    "path",
    [
        "/yalgaar",
        "/yalgaar/",
        "/yalgaar/presence",
        "/yalgaar/presence/",
        "/yalgaar/message",
        "/yalgaar/message/",
    ],
)
def test_every_route_answers_post_without_redirect(client: FlaskClient, path: str) -> None:
    response = client.post(path, data=payload("items-list.json"))
    assert response.status_code == 200, response.data
    assert response.json is not None and response.json["accepted"] == 2


@pytest.mark.parametrize("path", ["/yalgaar", "/yalgaar/", "/yalgaar/presence", "/yalgaar/message"])
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_probes_answer_200(client: FlaskClient, path: str, method: str) -> None:
    response = client.open(path, method=method)
    assert response.status_code == 200
    if method == "GET":
        assert response.json is not None and response.json["status"] == "ok"


def test_other_methods_are_405(client: FlaskClient) -> None:
    assert client.put("/yalgaar/presence", data=b"{}").status_code == 405


def test_routes_without_a_prefix() -> None:
    client = make_app(Receiver(client_keys=[KEY]), prefix=None).test_client()
    assert client.post("/", data=payload("presence-bind.json")).status_code == 200
    assert client.post("/presence", data=payload("presence-bind.json")).status_code == 200


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "application/json",
        "application/json; charset=utf-8",
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/octet-stream",
    ],
)
def test_any_content_type_is_read_as_json(client: FlaskClient, content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post("/yalgaar/presence", data=payload("presence-bind.json"), headers=headers)
    assert response.status_code == 200
    assert response.json == {"accepted": 1, "rejected": [], "failed": 0}


def test_the_endpoint_is_the_hint_and_the_body_wins(
    receiver: Receiver, client: FlaskClient
) -> None:
    kinds: list[str] = []
    receiver.on_event(lambda e: kinds.append(type(e).__name__))
    client.post("/yalgaar/presence", data=payload("source-missing.json"))
    client.post("/yalgaar/message", data=payload("source-missing.json"))
    client.post("/yalgaar/presence", data=payload("source-message-on-presence-url.json"))
    assert kinds == ["BindEvent", "MessageEvent", "MessageEvent"]


def test_malformed_items_are_reported_and_the_rest_dispatched(
    receiver: Receiver, client: FlaskClient
) -> None:
    seen: list[Event] = []
    receiver.on_event(seen.append)
    response = client.post("/yalgaar/", data=payload("channels-uuids.json"))
    assert response.status_code == 200
    body = response.json
    assert body is not None
    assert body["accepted"] == 5 == len(seen)
    assert body["failed"] == 0
    assert [r["index"] for r in body["rejected"]] == list(range(5, 16))
    assert body["rejected"][0] == {
        "envelope": 0,
        "index": 5,
        "errors": {"channel": ["Missing data for required field."]},
    }


@pytest.mark.parametrize(
    "name",
    [
        "items-empty.json",
        "data-empty-list.json",
        "data-null.json",
        "data-missing.json",
        "data-empty-object.json",
    ],
)
def test_empty_batches_are_200(client: FlaskClient, name: str) -> None:
    response = client.post("/yalgaar/presence", data=payload(name))
    assert response.status_code == 200
    assert response.json == {"accepted": 0, "rejected": [], "failed": 0}


@pytest.mark.parametrize(
    "name",
    [
        "not-json.txt",
        "latin1.bin",
        "not-envelope.json",
        "json-string.json",
        "data-string.json",
        "data-number.json",
        "items-number.json",
        "items-list-with-number.json",
    ],
)
def test_bodies_that_are_no_envelope_are_400(client: FlaskClient, name: str) -> None:
    response = client.post("/yalgaar/presence", data=payload(name))
    assert response.status_code == 400
    assert response.mimetype == PROBLEM
    problem = response.json
    assert problem is not None
    assert problem["status"] == 400 and problem["title"] and problem["detail"]
    assert problem["messages"]


def test_too_deep_is_400(client: FlaskClient) -> None:
    response = client.post("/yalgaar/", data=b"[" * 65 + b"]" * 65)
    assert response.status_code == 400
    assert "deeper than 64" in response.json["detail"]  # type: ignore[index]


@pytest.mark.parametrize(
    "name",
    [
        "client-key-missing.json",
        "client-key-number.json",
        "client-key-wrong.json",
        "client-key-mixed.json",
        "doc-presence.json",
    ],
)
def test_bad_client_keys_are_403_without_details(client: FlaskClient, name: str) -> None:
    response = client.post("/yalgaar/presence", data=payload(name))
    assert response.status_code == 403
    assert response.mimetype == PROBLEM
    assert response.json is not None
    assert response.json["detail"] == "The request is not authenticated."
    assert b"ck-" not in response.data


def test_body_over_the_limit_is_413_before_it_is_read() -> None:
    receiver = Receiver(client_keys=[KEY])
    errors: list[BaseException] = []
    client = make_app(receiver, YALGAAR_MAX_BODY_BYTES=100).test_client()
    with signals.envelope_rejected.connected_to(
        lambda s, error: errors.append(error), sender=receiver
    ):
        by_header = client.post("/yalgaar/", data=b"x" * 101)
        exact = client.post("/yalgaar/", data=b"{" + b" " * 98 + b"}")
    assert by_header.status_code == 413 and by_header.mimetype == PROBLEM
    assert by_header.json is not None and "max_body_bytes=100" in by_header.json["detail"]
    assert exact.status_code == 400  # exactly at the limit: read, and refused as no envelope
    assert [type(e) for e in errors] == [PayloadTooLargeError, InvalidEnvelopeError]


def test_body_without_content_length_is_cut_at_the_limit() -> None:
    receiver = Receiver(client_keys=[KEY])
    client = make_app(receiver, YALGAAR_MAX_BODY_BYTES="100").test_client()
    body = b"{" + b" " * 200 + b"}"
    # A streamed body (chunked transfer encoding) has no Content-Length to refuse up front.
    response = client.post(
        "/yalgaar/",
        input_stream=io.BytesIO(body),
        environ_overrides={"wsgi.input_terminated": True},
        headers={"Transfer-Encoding": "chunked"},
    )
    assert response.status_code == 413
    assert response.json is not None
    # Never a byte count it did not read.
    assert response.json["detail"] == "The body has more than max_body_bytes=100 bytes."


@pytest.mark.parametrize(
    ("arguments", "config", "limit"),
    [
        ({}, {}, 1_048_576),
        ({}, {"YALGAAR_MAX_BODY_BYTES": 10}, 10),
        ({"max_body_bytes": 20}, {"YALGAAR_MAX_BODY_BYTES": 10}, 20),
    ],
)
def test_the_http_settings_come_from_the_argument_then_the_config(
    arguments: dict[str, t.Any], config: dict[str, t.Any], limit: int
) -> None:
    app = Flask(__name__)
    app.config.update(config, YALGAAR_ALLOW_CLIENT_KEY_ONLY=True)
    app.register_blueprint(create_blueprint(Receiver([KEY]), **arguments))
    assert blueprint_settings(app).max_body_bytes == limit


def test_the_receivers_deprecated_http_settings_reach_the_blueprint() -> None:
    with pytest.warns(DeprecationWarning):
        receiver = Receiver([KEY], max_body_bytes=30, fail_on_handler_error=False)
    found = blueprint_settings(make_app(receiver))
    assert (found.max_body_bytes, found.fail_on_handler_error) == (30, False)


def test_a_bad_http_setting_fails_at_registration_and_names_its_source() -> None:
    with pytest.raises(ConfigurationError, match="Read from the config key YALGAAR_MAX_BODY"):
        make_app(Receiver([KEY]), YALGAAR_MAX_BODY_BYTES="lots")


def test_too_many_items_is_413(receiver: Receiver) -> None:
    client = make_app(Receiver(client_keys=[KEY], max_items=13)).test_client()
    assert client.post("/yalgaar/", data=payload("presence-actions.json")).status_code == 413
    client = make_app(Receiver(client_keys=[KEY], max_items=14)).test_client()
    assert client.post("/yalgaar/", data=payload("presence-actions.json")).status_code == 200


def test_checks_run_in_order() -> None:
    receiver = Receiver(client_keys=[KEY], max_items=1, strict=True)
    client = make_app(receiver, YALGAAR_MAX_BODY_BYTES=100).test_client()
    # 1: size beats everything
    assert client.post("/yalgaar/", data=b"{" * 101).status_code == 413
    # 2: not JSON beats the item count and keys
    assert client.post("/yalgaar/", data=b"{" * 100).status_code == 400
    # 3: the item count beats the key
    two = json.dumps({"clientKey": "x", "data": [{}, {}]}).encode()
    assert client.post("/yalgaar/", data=two).status_code == 413
    # 4: the key beats strict item validation
    one_bad = json.dumps({"clientKey": "x", "data": [{"action": "bind"}]}).encode()
    assert client.post("/yalgaar/", data=one_bad).status_code == 403
    # 5: strict
    one_bad = json.dumps({"clientKey": KEY, "data": [{"action": "bind"}]}).encode()
    response = client.post("/yalgaar/", data=one_bad)
    assert response.status_code == 400
    assert response.json is not None
    assert response.json["rejected"] == [
        {"envelope": 0, "index": 0, "errors": {"channel": ["Missing data for required field."]}}
    ]


def test_strict_mode_lists_the_rejected_items() -> None:
    client = make_app(Receiver(client_keys=[KEY], strict=True)).test_client()
    response = client.post("/yalgaar/presence", data=payload("presence-actions.json"))
    assert response.status_code == 400
    assert response.mimetype == PROBLEM
    assert response.json is not None
    assert [(r["envelope"], r["index"]) for r in response.json["rejected"]] == [(0, 11), (0, 12)]
    assert response.json["rejected"][0]["errors"] == {"action": ["Field may not be null."]}


def test_a_failing_handler_makes_a_500_with_the_summary(
    receiver: Receiver, client: FlaskClient
) -> None:
    seen: list[str | None] = []

    @receiver.on_bind
    def broken(event: BindEvent) -> None:
        if event.uuid == "u0":
            raise RuntimeError("database down")
        seen.append(event.uuid)

    response = client.post("/yalgaar/presence", data=payload("presence-actions.json"))
    assert response.status_code == 500
    assert response.json is not None
    assert response.json["failed"] == 1
    assert response.json["accepted"] == 12
    assert len(response.json["rejected"]) == 2
    assert seen == ["u1", "u3", "u5"]  # the other events still ran
    assert b"database down" not in response.data  # no internals in the answer


def test_handler_errors_can_be_acknowledged_anyway() -> None:
    receiver = Receiver(client_keys=[KEY])
    receiver.on_bind(lambda e: 1 / 0)
    app = make_app(receiver, YALGAAR_FAIL_ON_HANDLER_ERROR="false")
    response = app.test_client().post("/yalgaar/", data=payload("presence-bind.json"))
    assert response.status_code == 200
    assert response.json == {"accepted": 1, "rejected": [], "failed": 1}


def test_async_handlers_work_in_flask(receiver: Receiver, client: FlaskClient) -> None:
    seen: list[str] = []

    @receiver.on_message
    async def handler(event: t.Any) -> None:
        seen.append(event.message)

    assert client.post("/yalgaar/", data=payload("bare-envelope.json")).status_code == 200
    assert seen == ["hi"]


# -- configuration through the app ------------------------------------------------------------


def test_keys_from_app_config_list() -> None:
    client = make_app(Receiver(), YALGAAR_CLIENT_KEYS=["ck-other", KEY]).test_client()
    assert client.post("/yalgaar/", data=payload("presence-bind.json")).status_code == 200
    assert client.post("/yalgaar/", data=payload("client-key-wrong.json")).status_code == 403


def test_keys_from_app_config_comma_string() -> None:
    client = make_app(Receiver(), YALGAAR_CLIENT_KEYS=f"ck-other, {KEY}").test_client()
    assert client.post("/yalgaar/", data=payload("presence-bind.json")).status_code == 200


def test_receiver_keys_win_over_config() -> None:
    client = make_app(
        Receiver(client_keys=[KEY]), YALGAAR_CLIENT_KEYS=["ck-ffffffffffffffff"]
    ).test_client()
    assert client.post("/yalgaar/", data=payload("presence-bind.json")).status_code == 200
    assert client.post("/yalgaar/", data=payload("client-key-wrong.json")).status_code == 403


def test_one_receiver_on_two_apps_with_their_own_keys() -> None:
    receiver = Receiver()
    first = make_app(receiver, YALGAAR_CLIENT_KEYS=[KEY]).test_client()
    second = make_app(receiver, YALGAAR_CLIENT_KEYS=["ck-ffffffffffffffff"]).test_client()
    assert first.post("/yalgaar/", data=payload("presence-bind.json")).status_code == 200
    assert second.post("/yalgaar/", data=payload("presence-bind.json")).status_code == 403
    assert second.post("/yalgaar/", data=payload("client-key-wrong.json")).status_code == 200


@pytest.mark.parametrize("config", [{}, {"YALGAAR_CLIENT_KEYS": []}, {"YALGAAR_CLIENT_KEYS": ""}])
def test_no_key_anywhere_fails_at_registration(config: dict[str, t.Any]) -> None:
    app = Flask(__name__)
    app.config.update(config)
    blueprint = create_blueprint(Receiver())
    with pytest.raises(ConfigurationError, match="YALGAAR_CLIENT_KEYS"):
        app.register_blueprint(blueprint, url_prefix="/yalgaar")


def test_empty_keys_in_config_are_refused() -> None:
    app = Flask(__name__)
    app.config["YALGAAR_CLIENT_KEYS"] = f"{KEY},,"
    with pytest.raises(ConfigurationError, match="empty key"):
        app.register_blueprint(create_blueprint(Receiver()))


def test_unauthenticated_receiver_registers_without_keys() -> None:
    with pytest.warns(YalgaarSecurityWarning, match="FROM ANYONE"):
        client = make_app(Receiver(allow_unauthenticated=True)).test_client()
    assert client.post("/yalgaar/", data=payload("client-key-missing.json")).status_code == 200


def test_two_blueprints_need_two_names() -> None:
    app = Flask(__name__)
    app.config["YALGAAR_ALLOW_CLIENT_KEY_ONLY"] = True
    app.register_blueprint(create_blueprint(Receiver(client_keys=[KEY]), name="a"), url_prefix="/a")
    app.register_blueprint(
        create_blueprint(Receiver(client_keys=["ck-b"]), name="b"), url_prefix="/b"
    )
    client = app.test_client()
    assert client.post("/a/", data=payload("presence-bind.json")).status_code == 200
    assert client.post("/b/", data=payload("presence-bind.json")).status_code == 403


def test_refusals_are_sent_on_envelope_rejected(receiver: Receiver, client: FlaskClient) -> None:
    errors: list[BaseException] = []
    with signals.envelope_rejected.connected_to(
        lambda s, error: errors.append(error), sender=receiver
    ):
        client.post("/yalgaar/", data=b"nope")
        client.post("/yalgaar/", data=payload("client-key-wrong.json"))
    assert [type(e) for e in errors] == [InvalidEnvelopeError, AuthenticationError]


def test_an_empty_keys_setting_means_none_set() -> None:
    app = Flask(__name__)
    app.config["YALGAAR_CLIENT_KEYS"] = "  "  # an environment variable that is set but empty
    with pytest.raises(
        ConfigurationError, match="Blueprint 'yalgaar': The receiver has no client key"
    ):
        app.register_blueprint(create_blueprint(Receiver()))


# -- registered names, and the settings each one resolved ---------------------------------------


def test_one_blueprint_registered_twice_keeps_each_name_s_settings() -> None:
    app = Flask(__name__)
    app.config["YALGAAR_CLIENT_KEYS"] = KEY
    receiver = Receiver()
    app.register_blueprint(create_blueprint(receiver, url_tokens=["t-one"]), url_prefix="/a")
    blueprint = create_blueprint(receiver, url_tokens=["t-two"])
    app.register_blueprint(blueprint, url_prefix="/b", name="second")
    assert blueprint_settings(app, "yalgaar").auth.url_tokens == ("t-one",)
    second = blueprint_settings(app, "second")
    assert second.name == "second" and second.auth.url_tokens == ("t-two",)
    assert second.endpoints["presence"] == "second.presence"
    # The keys came from the config: each name is served by a copy that has them.
    assert second.receiver.client_keys == (KEY,) and receiver.client_keys == ()

    from yalgaar_receiver.flask import WebhookClient

    client = WebhookClient(app, blueprint="second")
    assert client.url_for("presence") == "/b/t-two/presence"
    response = client.post(payload("presence-bind.json"))
    assert response.status_code == 200, response.json
    with pytest.raises(LookupError, match="several receiver blueprints"):
        blueprint_settings(app)


def test_a_schema_subclass_validates_its_own_field_through_http() -> None:
    from marshmallow import fields, validate

    from yalgaar_receiver.schemas import MessageItemSchema

    class Order(MessageItemSchema):
        """The application's rule: every message names its region."""

        region = fields.Str(required=True, validate=validate.OneOf(["eu", "us"]))

    receiver = Receiver(client_keys=[KEY], message_schema=Order())
    regions: list[object] = []
    receiver.on_message(lambda event: regions.append(event.extra["region"]))
    client = make_app(receiver).test_client()
    items = [
        {"channel": "c", "uuid": "u", "timestamp": "1", "message": "m", "region": "eu"},
        {"channel": "c", "uuid": "u", "timestamp": "1", "message": "m", "region": "mars"},
    ]
    body = json.dumps({"items": {"source": "Message", "clientKey": KEY, "data": items}})
    response = client.post("/yalgaar/message", data=body)
    assert response.status_code == 200
    assert response.json == {
        "accepted": 1,
        "rejected": [
            {"envelope": 0, "index": 1, "errors": {"region": ["Must be one of: eu, us."]}}
        ],
        "failed": 0,
    }
    assert regions == ["eu"]


def test_without_url_tokens_a_token_path_is_unknown_and_the_test_client_still_builds_it(
    receiver: Receiver,
) -> None:
    seen: list[Event] = []
    receiver.on_event(seen.append)
    webhook = WebhookClient(make_app(receiver), token="not-a-token")
    assert webhook.url_for("presence") == "/yalgaar/not-a-token/presence"
    response = webhook.post(payload("presence-bind.json"))
    assert response.status_code == 404
    assert response.mimetype == PROBLEM
    assert seen == []
