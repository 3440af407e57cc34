"""The test kit: builders give what Yalgaar sends, and the capture sees what a receiver does."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timezone

import pytest
from flask import Flask

from yalgaar_receiver import (
    AuthenticationError,
    BindEvent,
    Event,
    InvalidEnvelopeError,
    MessageEvent,
    PresenceEvent,
    Receiver,
    UnbindEvent,
    create_blueprint,
    parse_envelope,
)
from yalgaar_receiver.testing import (
    Payload,
    bind,
    capture_events,
    message,
    message_envelope,
    presence_envelope,
    unbind,
)

KEY = "ck-0123456789abcdef"
AT = datetime(2018, 3, 21, 5, 20, tzinfo=timezone.utc)  # 1521609600


@pytest.fixture
def receiver() -> Receiver:
    return Receiver(client_keys=[KEY])


def test_presence_envelope_is_the_documented_shape() -> None:
    body = presence_envelope(bind("lobby", "alice", at=AT), client_key=KEY)
    assert body == {
        "items": {
            "source": "Presence",
            "clientKey": KEY,
            "data": [
                {"channel": "lobby", "uuid": "alice", "timestamp": "1521609600", "action": "bind"}
            ],
        }
    }
    assert json.loads(body.to_bytes()) == body
    assert body.to_text() == body.to_bytes().decode()
    assert b"\n" not in body.to_bytes()


def test_message_envelope_is_the_documented_shape() -> None:
    body = message_envelope(message("lobby", "alice", "hi", at=1521609600), client_key=KEY)
    assert body["items"]["source"] == "Message"
    assert body["items"]["data"] == [
        {"channel": "lobby", "uuid": "alice", "timestamp": "1521609600", "message": "hi"}
    ]


def test_builders_parse_to_exactly_the_events_built() -> None:
    presence = presence_envelope(
        bind("lobby", "alice", at=AT),
        unbind("lobby", "bob", at=1521609601.9),
        client_key=KEY,
    )
    messages = message_envelope(
        message("room-1", "carol", {"lat": 1.5, "name": "Zoë"}, at=AT),
        message("room-1", "carol", "plain text", at=AT),
        client_key=KEY,
    )

    p = parse_envelope(presence.to_bytes())
    m = parse_envelope(messages.to_bytes())

    assert p.rejected == m.rejected == ()
    assert p.events == (
        BindEvent(channel="lobby", uuid="alice", timestamp=AT, client_key=KEY),
        UnbindEvent(
            channel="lobby",
            uuid="bob",
            timestamp=datetime(2018, 3, 21, 5, 20, 1, tzinfo=timezone.utc),
            client_key=KEY,
        ),
    )
    assert m.events == (
        MessageEvent(
            channel="room-1",
            uuid="carol",
            timestamp=AT,
            message='{"lat":1.5,"name":"Zoë"}',
            client_key=KEY,
        ),
        MessageEvent(
            channel="room-1", uuid="carol", timestamp=AT, message="plain text", client_key=KEY
        ),
    )
    first = m.events[0]
    assert isinstance(first, MessageEvent)
    assert first.json() == {"lat": 1.5, "name": "Zoë"}


def test_naive_datetime_is_utc_and_default_is_now() -> None:
    assert bind("c", "u", at=datetime(2018, 3, 21, 5, 20))["timestamp"] == "1521609600"
    before = int(datetime.now(timezone.utc).timestamp())
    stamp = int(bind("c", "u")["timestamp"])
    assert before <= stamp <= before + 5


@pytest.mark.parametrize("bad", ["1521609600", True, [1]])
def test_at_must_be_a_time(bad: object) -> None:
    with pytest.raises(TypeError, match="at must be"):
        bind("c", "u", at=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("early", [-1, datetime(1969, 12, 31, tzinfo=timezone.utc)])
def test_at_before_1970_is_refused(early: int | datetime) -> None:
    with pytest.raises(ValueError, match="before 1970"):
        unbind("c", "u", at=early)


def test_client_key_must_be_text() -> None:
    with pytest.raises(TypeError, match="client_key"):
        presence_envelope(client_key=None)  # type: ignore[arg-type]


def test_payload_is_a_dict_that_can_be_broken_on_purpose(receiver: Receiver) -> None:
    body = presence_envelope(bind("c", "u"), client_key=KEY)
    del body["items"]["clientKey"]
    with pytest.raises(AuthenticationError):
        receiver.handle(body.to_bytes())
    assert isinstance(body, Payload)


def test_capture_records_everything_in_order(receiver: Receiver) -> None:
    seen: list[str] = []

    @receiver.on_bind
    def on_bind(event: BindEvent) -> None:
        seen.append(f"bind {event.uuid}")
        if event.uuid == "bob":
            raise RuntimeError("bob is not welcome")

    body = presence_envelope(
        bind("lobby", "alice", at=AT),
        {"channel": "", "uuid": "x", "timestamp": "1", "action": "bind"},
        bind("lobby", "bob", at=AT),
        {"channel": "lobby", "uuid": "dave", "timestamp": "1", "action": "kick"},
        client_key=KEY,
    )
    with capture_events(receiver) as capture:
        outcome = receiver.handle(body.to_bytes())
        with pytest.raises(InvalidEnvelopeError):
            receiver.handle(b"not json")

    assert seen == ["bind alice", "bind bob"]
    assert [r.kind for r in capture.records] == [
        "envelope",
        "rejection",
        "event",  # alice
        "failure",  # bob's handler raised, before bob's event reached the signals
        "event",  # bob
        "event",  # dave, an unknown action
        "refusal",
    ]
    assert all(r.sender is receiver for r in capture.records)
    assert capture.events == list(outcome.accepted)
    assert [e.uuid for e in capture.of_type(BindEvent)] == ["alice", "bob"]
    assert [e.uuid for e in capture.of_type(PresenceEvent)] == ["alice", "bob", "dave"]
    assert capture.of_type(MessageEvent) == []
    assert [r.index for r in capture.rejections] == [1]
    assert capture.rejections == list(outcome.rejected)
    (failure,) = capture.failures
    assert failure.handler is on_bind and str(failure.error) == "bob is not welcome"
    assert failure.event.uuid == "bob"
    assert isinstance(capture.refusals[0], InvalidEnvelopeError)
    assert capture.envelopes[0].events == outcome.accepted
    assert "events=3" in repr(capture)


def test_capture_listens_only_to_its_receiver_and_only_while_open(receiver: Receiver) -> None:
    other = Receiver(client_keys=[KEY])
    body = message_envelope(message("c", "u", "hi"), client_key=KEY).to_bytes()
    with capture_events(receiver) as mine, capture_events() as everyone:
        receiver.handle(body)
        other.handle(body)
    receiver.handle(body)

    assert [r.sender for r in mine.records if r.kind == "event"] == [receiver]
    assert [r.sender for r in everyone.records if r.kind == "event"] == [receiver, other]
    assert len(mine.events) == 1


def test_capture_is_disconnected_when_the_block_raises(receiver: Receiver) -> None:
    body = message_envelope(message("c", "u", "hi"), client_key=KEY).to_bytes()
    with pytest.raises(KeyError), capture_events(receiver) as capture:
        raise KeyError("boom")
    receiver.handle(body)
    assert capture.records == []


def test_capture_through_the_flask_blueprint(receiver: Receiver) -> None:
    app = Flask(__name__)
    app.register_blueprint(create_blueprint(receiver, url_tokens=["t0ken"]), url_prefix="/yalgaar")
    client = app.test_client()
    with capture_events(receiver) as capture:
        ok = client.post(
            "/yalgaar/t0ken/presence",
            data=presence_envelope(bind("lobby", "alice", at=AT), client_key=KEY).to_bytes(),
        )
        refused = client.post(
            "/yalgaar/t0ken/presence",
            data=presence_envelope(bind("lobby", "eve"), client_key="ck-wrong").to_bytes(),
        )
    assert (ok.status_code, refused.status_code) == (200, 403)
    assert capture.events == [
        BindEvent(channel="lobby", uuid="alice", timestamp=AT, client_key=KEY)
    ]
    assert isinstance(capture.refusals[0], AuthenticationError)


def test_wait_for_events_from_another_thread(receiver: Receiver) -> None:
    body = message_envelope(message("c", "u", "hi"), client_key=KEY).to_bytes()
    with capture_events(receiver) as capture:
        worker = threading.Thread(target=receiver.handle, args=(body,))
        worker.start()
        try:
            events: list[Event] = capture.wait_for(1, timeout=10)
        finally:
            worker.join(timeout=10)
    assert [e.channel for e in events] == ["c"]
    capture.clear()
    with pytest.raises(TimeoutError, match="1 event"):
        capture.wait_for(1, timeout=0.01)


def test_a_capture_reads_as_the_list_of_its_events(receiver: Receiver) -> None:
    body = presence_envelope(
        bind("lobby", "alice", at=AT), bind("lobby", "bob", at=AT), client_key=KEY
    )
    with capture_events(receiver) as capture:
        assert len(capture) == 0 and list(capture) == []
        receiver.handle(body.to_bytes())
    assert len(capture) == 2
    assert list(capture) == capture.events
    assert [e.uuid for e in capture] == ["alice", "bob"]
    assert capture[0].uuid == "alice" and [e.uuid for e in capture[1:]] == ["bob"]


def test_capture_records_duplicates() -> None:
    from yalgaar_receiver.delivery.dedupe import MemoryDedupeStore

    receiver = Receiver(client_keys=[KEY], dedupe=MemoryDedupeStore())
    body = presence_envelope(bind("lobby", "alice", at=AT), client_key=KEY).to_bytes()
    with capture_events(receiver) as capture:
        receiver.handle(body)
        receiver.handle(body)
    assert [r.kind for r in capture.records] == ["envelope", "event", "envelope", "duplicate"]
    assert capture.duplicates == capture.events
