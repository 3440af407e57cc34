"""Typed payloads: ``on_message(payload=Schema())`` hands a handler what its schema loaded, and a
message the schema refuses is reported, never raised, whichever the dispatcher."""

from __future__ import annotations

import logging
import typing as t
from dataclasses import dataclass

import pytest
from flask import Flask
from marshmallow import Schema, fields, post_load

from yalgaar_receiver import (
    MessageEvent,
    Receiver,
    ThreadPoolDispatcher,
    create_blueprint,
    signals,
)
from yalgaar_receiver.testing import capture_events, message, message_envelope

KEY = "ck-0123456789abcdef"
AES_KEY = "0123456789abcdef"


class Order(Schema):
    id = fields.Int(required=True)
    items = fields.List(fields.Str(), required=True)


@dataclass(frozen=True)
class Ticket:
    number: int


class TicketSchema(Schema):
    """Builds an object, and counts its loads."""

    number = fields.Int(required=True)
    made: t.ClassVar[int] = 0

    @post_load
    def make(self, data: dict[str, t.Any], **kwargs: t.Any) -> Ticket:
        TicketSchema.made += 1
        return Ticket(**data)


def body(*items: dict[str, t.Any]) -> bytes:
    return message_envelope(*items, client_key=KEY).to_bytes()


def order(n: int, channel: str = "orders-1") -> dict[str, t.Any]:
    return message(channel, f"u{n}", {"id": n, "items": ["tea"]})


@pytest.fixture
def receiver() -> Receiver:
    return Receiver([KEY])


def test_a_typed_handler_gets_the_loaded_payload_and_the_others_the_event(
    receiver: Receiver,
) -> None:
    typed: list[t.Any] = []
    plain: list[MessageEvent] = []

    @receiver.on_message(channel="orders-*", payload=Order())
    def take(event: MessageEvent) -> None:
        typed.append(event.payload)

    receiver.on_message(plain.append)
    outcome = receiver.handle(body(order(7), message("lobby", "u", "hi")))
    assert typed == [{"id": 7, "items": ["tea"]}]
    assert [e.payload for e in plain] == [None, None]
    assert outcome.rejected == () and outcome.failed == ()
    with pytest.raises(TypeError, match="read-only"):
        typed[0]["items"].append("cake")  # one load, shared: read-only like the rest


def test_a_refused_payload_is_reported_and_the_other_handlers_still_run(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    typed: list[t.Any] = []
    plain: list[str] = []

    @receiver.on_message(payload=Order())
    def take(event: MessageEvent) -> None:
        typed.append(event.payload)

    receiver.on_message(lambda e: plain.append(e.uuid))
    sent: list[dict[str, t.Any]] = []
    with (
        capture_events(receiver) as capture,
        signals.payload_rejected.connected_to(lambda s, **kw: sent.append(kw), sender=receiver),
    ):
        outcome = receiver.handle(
            body(order(1), message("c", "text", "tea please"), message("c", "bad", {"id": "x"}))
        )
    assert typed == [{"id": 1, "items": ["tea"]}]
    assert plain == ["u1", "text", "bad"]
    name = f"{take.__module__}.{take.__qualname__}"
    assert [(r.index, r.handlers) for r in outcome.rejected] == [(1, (name,)), (2, (name,))]
    not_json, invalid = outcome.rejected
    assert "not JSON text" in not_json.errors["message"][0]
    assert invalid.errors == {
        "message": {"id": ["Not a valid integer."], "items": ["Missing data for required field."]}
    }
    assert [kw["rejection"] for kw in sent] == list(outcome.rejected)
    assert [kw["event"].uuid for kw in sent] == ["text", "bad"]
    assert capture.rejections == list(outcome.rejected)
    assert "The payload of" in caplog.text


def test_one_schema_loads_once_per_event_and_each_schema_loads_its_own(
    receiver: Receiver,
) -> None:
    shared = TicketSchema()
    got: list[tuple[str, t.Any]] = []
    receiver.on_message(payload=shared)(lambda e: got.append(("first", e.payload)))
    receiver.on_message(payload=shared)(lambda e: got.append(("second", e.payload)))
    receiver.on_message(payload=TicketSchema())(lambda e: got.append(("own", e.payload)))
    TicketSchema.made = 0
    receiver.handle(body(message("c", "u", {"number": 3})))
    assert got == [("first", Ticket(3)), ("second", Ticket(3)), ("own", Ticket(3))]
    assert got[0][1] is got[1][1] and got[0][1] is not got[2][1]
    assert TicketSchema.made == 2  # one per schema object, not one per handler


def test_json_encoded_twice_is_read_as_event_json_reads_it(receiver: Receiver) -> None:
    got: list[t.Any] = []
    receiver.on_message(payload=Order())(lambda e: got.append(e.payload))
    twice = message("c", "u", '{"id": 2, "items": []}')
    twice["message"] = '"{\\"id\\": 2, \\"items\\": []}"'  # JSON.stringify of JSON text
    receiver.handle(body(twice))
    assert got == [{"id": 2, "items": []}]


def test_filters_decide_which_messages_a_schema_sees(receiver: Receiver) -> None:
    receiver.on_message(channel="orders-*", payload=Order())(lambda e: None)
    outcome = receiver.handle(body(message("lobby", "u", "not an order")))
    assert outcome.rejected == ()  # the schema's handler does not take lobby messages


def test_decrypted_first_then_loaded() -> None:
    receiver = Receiver([KEY], message_keys=[AES_KEY])
    got: list[t.Any] = []
    receiver.on_message(payload=Order())(lambda e: got.append((e.encrypted, e.payload)))
    item = message("c", "u", {"id": 5, "items": ["x"]}, encrypt_key=AES_KEY)
    receiver.handle(body(item))
    assert got == [(True, {"id": 5, "items": ["x"]})]


def test_a_schema_that_raises_fails_its_handler_like_any_error(receiver: Receiver) -> None:
    class Broken(Schema):
        id = fields.Int()

        @post_load
        def make(self, data: dict[str, t.Any], **kwargs: t.Any) -> t.Any:
            raise KeyError("a bug in the schema")

    ran: list[str] = []

    @receiver.on_message(payload=Broken())
    def typed(event: MessageEvent) -> None:
        ran.append("typed")

    receiver.on_message(lambda e: ran.append("plain"))
    outcome = receiver.handle(body(message("c", "u", {"id": 1})))
    assert ran == ["plain"]
    [failure] = outcome.failed
    assert failure.handler is typed and isinstance(failure.error, KeyError)
    assert outcome.rejected == ()


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (Order, r"an instance: Order\(\)"),
        ({"id": int}, "must be a marshmallow Schema instance"),
    ],
)
def test_a_payload_that_is_no_schema_fails_at_registration(
    receiver: Receiver, payload: t.Any, message: str
) -> None:
    with pytest.raises(TypeError, match=message):
        receiver.on_message(payload=payload)


def test_emit_loads_on_first_use_and_skips_a_refusal_with_a_log_line(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    got: list[t.Any] = []
    receiver.on_message(payload=Order())(lambda e: got.append(e.payload))
    good, bad = receiver.parser.parse(
        body(order(4), message("c", "u", "plain"))
    ).events  # what a worker or a replay holds: events, no request
    assert receiver.emit(good) == () and receiver.emit(bad) == ()
    assert got == [{"id": 4, "items": ["tea"]}]
    assert "its payload schema refused" in caplog.text


def test_the_thread_pool_reports_refusals_in_the_answer() -> None:
    dispatcher = ThreadPoolDispatcher(max_workers=1)
    receiver = Receiver([KEY], dispatcher=dispatcher)
    got: list[t.Any] = []
    receiver.on_message(payload=Order())(lambda e: got.append(e.payload))
    try:
        with capture_events(receiver) as capture:
            outcome = receiver.handle(body(order(1), message("c", "u", "no")))
            capture.wait_for(2)
    finally:
        dispatcher.close(timeout=10)
    assert [r.index for r in outcome.rejected] == [1]
    assert got == [{"id": 1, "items": ["tea"]}]


def test_through_http_a_bad_payload_is_200_with_the_handlers_named(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    receiver = Receiver([KEY])
    got: list[t.Any] = []

    @receiver.on_message(channel="orders-*", payload=Order())
    def take(event: MessageEvent) -> None:
        got.append(event.payload)

    app = Flask(__name__)
    app.config["YALGAAR_ALLOW_CLIENT_KEY_ONLY"] = True
    app.register_blueprint(create_blueprint(receiver), url_prefix="/yalgaar")
    response = app.test_client().post(
        "/yalgaar/message", data=body(order(9), order(10) | {"message": '{"id": 10}'})
    )
    assert response.status_code == 200, response.data
    assert response.json == {
        "accepted": 2,
        "rejected": [
            {
                "envelope": 0,
                "index": 1,
                "errors": {"message": {"items": ["Missing data for required field."]}},
                "handlers": [f"{take.__module__}.{take.__qualname__}"],
            }
        ],
        "failed": 0,
    }
    assert got == [{"id": 9, "items": ["tea"]}]
