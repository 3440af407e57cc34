"""The versioned JSON form of events: every event survives the trip exactly."""

from __future__ import annotations

import json
import typing as t
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from yalgaar_receiver import (
    BindEvent,
    Event,
    InvalidEnvelopeError,
    MessageEvent,
    PresenceAction,
    PresenceEvent,
    UnbindEvent,
    UnknownEvent,
    parse_envelope,
)
from yalgaar_receiver.delivery.serialization import (
    FORMAT_VERSION,
    dumps,
    event_from_dict,
    event_to_dict,
    loads,
)

from ..payloads import all_payloads, payload


def assert_same(copy: Event, event: Event) -> None:
    """Equal in every field, ``raw`` (outside ``==``) and the timestamp's offset included."""
    assert type(copy) is type(event)
    # NaN is never equal to itself, so raw and extra are compared as the JSON text Python writes.
    assert replace(copy, extra={}) == replace(event, extra={})
    for field in ("raw", "extra"):
        mine, theirs = getattr(copy, field), getattr(event, field)
        assert json.dumps(mine, sort_keys=True) == json.dumps(theirs, sort_keys=True)
    if event.timestamp is None:
        assert copy.timestamp is None
    else:
        assert copy.timestamp is not None
        assert copy.timestamp.isoformat() == event.timestamp.isoformat()
        assert copy.timestamp.utcoffset() == event.timestamp.utcoffset()


def payload_events() -> list[tuple[str, Event]]:
    found: list[tuple[str, Event]] = []
    for name in all_payloads():
        for hint in (None, "presence", "message"):
            try:
                batch = parse_envelope(payload(name), source_hint=hint)
            except InvalidEnvelopeError:
                continue
            found.extend((f"{name}:{hint}", event) for event in batch.events)
    return found


PAYLOAD_EVENTS = payload_events()


def test_the_payload_files_cover_every_event_class() -> None:
    classes = {type(event) for _, event in PAYLOAD_EVENTS}
    assert classes == {BindEvent, UnbindEvent, PresenceEvent, MessageEvent, UnknownEvent}


@pytest.mark.parametrize(("where", "event"), PAYLOAD_EVENTS, ids=[w for w, _ in PAYLOAD_EVENTS])
def test_payload_events_round_trip(where: str, event: Event) -> None:
    assert_same(loads(dumps(event)), event)
    assert_same(event_from_dict(json.loads(json.dumps(event_to_dict(event)))), event)


def test_the_documented_form() -> None:
    body = payload("presence-bind.json")
    event = parse_envelope(body).events[0]
    form = json.loads(dumps(event))
    assert set(form) == {
        "v",
        "type",
        "channel",
        "uuid",
        "timestamp",
        "client_key",
        "raw",
        "extra",
        "action",
        "raw_action",
    }
    assert form["v"] == FORMAT_VERSION == 1
    assert form["raw"] == json.loads(body)["items"]["data"][0]


def test_unknown_action_and_unknown_source_keep_what_was_sent() -> None:
    presence = PresenceEvent(
        channel="c", uuid=None, timestamp=None, raw_action="kick", raw={"action": "kick"}
    )
    copy = loads(dumps(presence))
    assert type(copy) is PresenceEvent
    assert copy.action is PresenceAction.UNKNOWN and copy.raw_action == "kick"
    unknown = UnknownEvent(channel=None, uuid="u", timestamp=None, source="Occupancy", raw={"n": 1})
    assert_same(loads(dumps(unknown)), unknown)


def test_a_subclass_travels_as_its_known_kind() -> None:
    class VipBind(BindEvent):
        pass

    event = VipBind(channel="c", uuid="u", timestamp=None)
    assert type(loads(dumps(event))) is BindEvent


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"v": 2}, "version 2 is not supported"),
        ({"v": None}, "version None"),
        ({"type": "kick"}, "Unknown serialized event type 'kick'"),
        ({"timestamp": "yesterday"}, "is not ISO-8601"),
        ({"timestamp": 5}, "must be ISO-8601 text"),
        ({"channel": None}, "needs a channel"),
        ({"channel": 5}, "must be text or null"),
        ({"raw": []}, "must be an object"),
        ({"action": "dance"}, "is not a valid PresenceAction"),
    ],
)
def test_bad_forms_are_refused_with_a_sentence(change: dict[str, t.Any], message: str) -> None:
    form = {**event_to_dict(BindEvent(channel="c", uuid="u", timestamp=None)), **change}
    with pytest.raises(ValueError, match=message):
        event_from_dict(form)


def test_a_missing_field_is_named() -> None:
    form = event_to_dict(MessageEvent(channel="c", uuid=None, timestamp=None, message="hi"))
    del form["message"]
    with pytest.raises(ValueError, match="has no 'message'"):
        event_from_dict(form)
    with pytest.raises(ValueError, match="is a JSON object, not list"):
        loads("[]")


# -- properties ----------------------------------------------------------------------------------

json_leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
)
json_values = st.recursive(
    json_leaves,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=12,
)
json_objects = st.dictionaries(st.text(max_size=8), json_values, max_size=4)
offsets = st.sampled_from([timezone.utc, timezone(timedelta(hours=5, minutes=30))])
timestamps = st.none() | st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=offsets
)
texts = st.text(max_size=16)
common = {
    "channel": texts,
    "uuid": st.none() | texts,
    "timestamp": timestamps,
    "client_key": texts,
    "raw": json_objects,
    "extra": json_objects,
}
events = st.one_of(
    st.builds(BindEvent, **common),
    st.builds(UnbindEvent, **common),
    st.builds(PresenceEvent, raw_action=texts, **common),
    st.builds(MessageEvent, message=texts, **common),
    st.builds(UnknownEvent, source=texts, **{**common, "channel": st.none() | texts}),
)


@settings(max_examples=300, deadline=None)
@given(events)
def test_every_event_round_trips(event: Event) -> None:
    assert_same(loads(dumps(event)), event)
    assert_same(loads(dumps(event).encode("utf-8")), event)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.fixed_dictionaries(
            {"channel": texts},
            optional={
                "uuid": texts,
                "timestamp": st.sampled_from(
                    ["1521609600.123456", "1521609600123", "2018-03-21T05:20:00.5+02:00", ""]
                ),
                "action": st.sampled_from(["bind", "Unbind", "kick"]) | json_values,
                "message": json_values,
                "note": json_values,
            },
        ),
        max_size=5,
    ),
    st.sampled_from(["Presence", "Message", "Occupancy"]),
)
def test_parsed_items_round_trip(data: list[dict[str, t.Any]], source: str) -> None:
    body = {"items": {"source": source, "clientKey": "ck", "data": data}}
    for event in parse_envelope(json.dumps(body)).events:
        assert_same(loads(dumps(event)), event)
