"""parse_envelope(): every accepted and refused shape, one payload file per case."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from yalgaar_receiver import (
    BindEvent,
    InvalidEnvelopeError,
    MessageEvent,
    PresenceAction,
    PresenceEvent,
    UnbindEvent,
    UnknownEvent,
    parse_envelope,
)

from ..payloads import KEY, payload

T0 = datetime(2018, 3, 21, 5, 20, tzinfo=timezone.utc)  # 1521609600


def test_documented_presence_body_rejects_its_empty_channel() -> None:
    batch = parse_envelope(payload("doc-presence.json"))
    assert batch.events == ()
    assert batch.client_keys == ("",)
    [rejection] = batch.rejected
    assert (rejection.envelope, rejection.index) == (0, 0)
    assert set(rejection.errors) == {"channel"}


def test_documented_message_body_rejects_its_empty_channel() -> None:
    batch = parse_envelope(payload("doc-message.json"))
    assert batch.events == ()
    assert list(batch.rejected[0].errors) == ["channel"]


def test_bind_event_fields() -> None:
    [event] = parse_envelope(payload("presence-bind.json")).events
    assert isinstance(event, BindEvent)
    assert event.channel == "lobby"
    assert event.uuid == "User-1a2b3c4d"
    assert event.timestamp == T0
    assert event.action is PresenceAction.BIND
    assert event.raw_action == "bind"
    assert event.client_key == KEY
    assert event.raw == json.loads(payload("presence-bind.json"))["items"]["data"][0]
    assert event.extra == {}


def test_actions_are_case_and_space_insensitive_and_unknown_ones_are_kept() -> None:
    batch = parse_envelope(payload("presence-actions.json"))
    by_uuid = {e.uuid: e for e in batch.events}
    expected = {
        "u0": BindEvent,
        "u1": BindEvent,
        "u2": UnbindEvent,
        "u3": BindEvent,
        "u4": UnbindEvent,
        "u5": BindEvent,
        "u6": UnbindEvent,
        "u7": UnbindEvent,
    }
    for uuid, cls in expected.items():
        assert type(by_uuid[uuid]) is cls, uuid
    for uuid, raw_action in {"u8": "2", "u9": "kick", "u10": "", "u13": '{"type":"bind"}'}.items():
        event = by_uuid[uuid]
        assert type(event) is PresenceEvent
        assert isinstance(event, PresenceEvent)
        assert event.action is PresenceAction.UNKNOWN
        assert event.raw_action == raw_action
    assert by_uuid["u2"].raw_action == " UNBIND "  # type: ignore[attr-defined]
    assert [(r.index, list(r.errors)) for r in batch.rejected] == [
        (11, ["action"]),
        (12, ["action"]),
    ]


def test_events_keep_item_order() -> None:
    batch = parse_envelope(payload("presence-actions.json"))
    assert [e.uuid for e in batch.events] == [
        f"u{i}" for i in (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 13)
    ]


def test_message_values() -> None:
    batch = parse_envelope(payload("message-values.json"))
    messages = [e.message for e in batch.events if isinstance(e, MessageEvent)]
    assert messages == [
        '{"lat":1}',
        '"{\\"lat\\":1}"',
        '{"lat":1,"name":"Zoë"}',
        "[1,2,3]",
        "42",
        "true",
        "",
        "U2FsdGVkX1+vupppZksvRf5pq5g5XjFRlipRkwB0K1Y=",
    ]
    assert [(r.index, list(r.errors)) for r in batch.rejected] == [
        (8, ["message"]),
        (9, ["message"]),
    ]


def test_message_json_decodes_one_or_two_layers() -> None:
    events = parse_envelope(payload("message-values.json")).events
    assert isinstance(events[0], MessageEvent) and isinstance(events[1], MessageEvent)
    assert events[0].json() == {"lat": 1}
    assert events[1].json() == {"lat": 1}
    assert events[2].json() == {"lat": 1, "name": "Zoë"}  # type: ignore[attr-defined]
    for not_json in (events[6], events[7]):
        assert isinstance(not_json, MessageEvent)
        with pytest.raises(ValueError):
            not_json.json()


def test_message_json_stops_after_two_layers() -> None:
    three = json.dumps(json.dumps(json.dumps({"a": 1})))
    event = MessageEvent(channel="c", uuid=None, timestamp=None, message=three)
    assert event.json() == json.dumps({"a": 1})
    plain = MessageEvent(channel="c", uuid=None, timestamp=None, message='"hello"')
    assert plain.json() == "hello"


@pytest.mark.parametrize(
    ("name", "kinds"),
    [
        ("items-list.json", [BindEvent, MessageEvent]),
        ("items-string.json", [BindEvent]),
        ("items-string-list.json", [BindEvent, UnbindEvent]),
        ("bare-envelope.json", [MessageEvent]),
        ("top-level-list.json", [BindEvent, UnbindEvent]),
        ("sources-alias.json", [BindEvent]),
        ("source-spacing-case.json", [BindEvent, MessageEvent]),
        ("data-object.json", [BindEvent]),
        ("bom.json", [BindEvent]),
    ],
)
def test_accepted_envelope_shapes(name: str, kinds: list[type]) -> None:
    batch = parse_envelope(payload(name))
    assert [type(e) for e in batch.events] == kinds
    assert batch.rejected == ()
    assert all(e.client_key == KEY for e in batch.events)


def test_a_list_of_envelopes_reports_rejections_per_envelope() -> None:
    body = {
        "items": [
            {"source": "Presence", "clientKey": KEY, "data": [{"channel": "a", "action": "bind"}]},
            {
                "source": "Presence",
                "clientKey": KEY,
                "data": [{"action": "bind"}, {"channel": "b"}],
            },
        ]
    }
    batch = parse_envelope(body)
    assert [(r.envelope, r.index) for r in batch.rejected] == [(1, 0), (1, 1)]
    assert batch.client_keys == (KEY, KEY)


@pytest.mark.parametrize(
    "name",
    ["data-empty-list.json", "data-empty-object.json", "data-null.json", "data-missing.json"],
)
def test_empty_data_is_zero_items(name: str) -> None:
    batch = parse_envelope(payload(name))
    assert (batch.events, batch.rejected, batch.client_keys) == ((), (), (KEY,))


def test_empty_items_list_is_zero_envelopes() -> None:
    batch = parse_envelope(payload("items-empty.json"))
    assert (batch.events, batch.rejected, batch.client_keys) == ((), (), ())


@pytest.mark.parametrize(
    ("name", "field"),
    [
        ("data-string.json", "data"),
        ("data-number.json", "data"),
        ("items-number.json", "items"),
        ("items-list-with-number.json", "items"),
        ("not-envelope.json", "_schema"),
        ("json-string.json", "_schema"),
        ("not-json.txt", "_schema"),
        ("latin1.bin", "_schema"),
    ],
)
def test_bodies_that_are_no_envelope(name: str, field: str) -> None:
    with pytest.raises(InvalidEnvelopeError) as info:
        parse_envelope(payload(name))
    assert field in info.value.messages
    assert str(info.value)  # a sentence for people


def test_items_list_error_names_the_envelope() -> None:
    with pytest.raises(InvalidEnvelopeError) as info:
        parse_envelope(payload("items-list-with-number.json"))
    assert info.value.messages == {
        "items": {1: {"_schema": ["The envelope must be a JSON object."]}}
    }


def test_data_error_is_a_sentence_naming_the_value() -> None:
    with pytest.raises(InvalidEnvelopeError, match="'channel=room'"):
        parse_envelope(payload("data-string.json"))


def test_source_missing_infers_per_item_on_the_combined_endpoint() -> None:
    batch = parse_envelope(payload("source-missing.json"))
    assert [type(e) for e in batch.events] == [BindEvent, MessageEvent, UnknownEvent]
    unknown = batch.events[2]
    assert isinstance(unknown, UnknownEvent)
    assert unknown.source == ""
    assert unknown.channel == "room"


@pytest.mark.parametrize("hint", ["presence", "message"])
def test_source_missing_uses_the_endpoint_hint(hint: str) -> None:
    batch = parse_envelope(payload("source-missing.json"), source_hint=hint)
    if hint == "presence":
        assert [type(e) for e in batch.events] == [BindEvent]
        assert [r.index for r in batch.rejected] == [1, 2]
    else:
        assert [type(e) for e in batch.events] == [MessageEvent]
        assert [r.index for r in batch.rejected] == [0, 2]


def test_source_that_is_not_a_string_counts_as_missing() -> None:
    batch = parse_envelope(payload("source-not-string.json"), source_hint="presence")
    assert [type(e) for e in batch.events] == [BindEvent]
    inferred = parse_envelope(payload("source-not-string.json"))
    assert [type(e) for e in inferred.events] == [BindEvent]


def test_a_source_that_contradicts_the_endpoint_wins() -> None:
    batch = parse_envelope(payload("source-message-on-presence-url.json"), source_hint="presence")
    assert [type(e) for e in batch.events] == [MessageEvent]


def test_unknown_source_gives_unknown_events_with_valid_fields_only() -> None:
    batch = parse_envelope(payload("source-unknown.json"))
    first, second = batch.events
    assert isinstance(first, UnknownEvent) and isinstance(second, UnknownEvent)
    assert (first.source, first.channel, first.uuid, first.timestamp) == (
        "Occupancy",
        "room",
        "u1",
        T0,
    )
    assert first.extra == {"occupancy": 3}
    assert (second.channel, second.uuid, second.timestamp) == (None, None, None)
    [rejection] = batch.rejected
    assert rejection.index == 2
    assert rejection.raw == "not an object"


def test_bad_source_hint_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="source_hint"):
        parse_envelope(payload("presence-bind.json"), source_hint="Presence")


def test_timestamps() -> None:
    batch = parse_envelope(payload("timestamps.json"))
    got = {e.uuid: e.timestamp for e in batch.events}
    expected = {
        "seconds-string": T0,
        "seconds-spaces": T0,
        "seconds-int": T0,
        "seconds-fraction": T0 + timedelta(milliseconds=500),
        "seconds-fraction-string": T0 + timedelta(milliseconds=123),
        "milliseconds": T0 + timedelta(milliseconds=123),
        "microseconds": T0 + timedelta(microseconds=123456),
        "nanoseconds": T0 + timedelta(microseconds=123457),
        "iso-z": T0,
        "iso-offset": T0,
        "iso-naive": T0,
        "empty": None,
        "zero": None,
        "zero-string": None,
        "null": None,
        "missing": None,
    }
    assert got == expected
    for moment in got.values():
        assert moment is None or moment.utcoffset() == timedelta(0)
    rejected = {r.raw["uuid"]: r.errors for r in batch.rejected}
    assert set(rejected) == {
        "negative",
        "negative-string",
        "boolean",
        "garbage",
        "object",
        "huge",
    }
    assert all(list(errors) == ["timestamp"] for errors in rejected.values())
    assert "'abc'" in rejected["garbage"]["timestamp"][0]


def test_channels_and_uuids() -> None:
    batch = parse_envelope(payload("channels-uuids.json"))
    assert [(e.channel, e.uuid) for e in batch.events] == [
        ("lobby", "u1"),
        ("42", "7"),
        ("lobby", None),
        ("lobby", None),
        ("lobby", None),
    ]
    rejected = {r.index: r.errors for r in batch.rejected}
    assert {i: list(errors) for i, errors in rejected.items()} == {
        5: ["channel"],
        6: ["channel"],
        7: ["channel"],
        8: ["channel"],
        9: ["channel"],
        10: ["channel"],
        11: ["channel"],
        12: ["uuid"],
        13: ["uuid"],
        14: ["_schema"],
        15: ["_schema"],
    }
    assert rejected[5]["channel"] == ["Missing data for required field."]
    assert rejected[14]["_schema"] == ["Each item must be a JSON object."]


def test_unknown_fields_are_kept_in_extra_and_raw() -> None:
    [event] = parse_envelope(payload("extra-fields.json")).events
    assert event.extra == {"occupancy": 3, "state": {"typing": True}}
    assert event.raw["state"] == {"typing": True}


def test_client_keys_that_are_not_strings_are_none() -> None:
    assert parse_envelope(payload("client-key-number.json")).client_keys == (None,)
    batch = parse_envelope(payload("client-key-missing.json"))
    assert batch.client_keys == (None,)
    assert batch.events[0].client_key == ""


def test_already_decoded_json_and_str_bodies() -> None:
    body = payload("presence-bind.json")
    from_bytes = parse_envelope(body)
    assert parse_envelope(body.decode()) == from_bytes
    assert parse_envelope(json.loads(body)) == from_bytes
    assert parse_envelope("\ufeff" + body.decode()) == from_bytes


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def test_depth_counts_every_level() -> None:
    item = {"channel": "c", "message": json.loads(_nested(60))}
    body = {"items": {"source": "Message", "clientKey": KEY, "data": [item]}}
    # items(1) > envelope(2) > data(3) > item(4) > 60 arrays = 64 levels: allowed.
    assert len(parse_envelope(body).events) == 1
    item["message"] = json.loads(_nested(61))
    with pytest.raises(InvalidEnvelopeError, match="deeper than 64"):
        parse_envelope(body)
    assert len(parse_envelope(body, max_depth=65).events) == 1


def test_very_deep_bodies_are_refused_not_crashed() -> None:
    for depth in (1_000, 100_000):
        with pytest.raises(InvalidEnvelopeError):
            parse_envelope(_nested(depth).encode())


def test_items_string_is_depth_checked_too() -> None:
    with pytest.raises(InvalidEnvelopeError, match="deeper"):
        parse_envelope(json.dumps({"items": _nested(100)}))


def test_lone_surrogates_in_structured_values_are_refused_or_replaced() -> None:
    # Text derived from a nested value (its JSON text) follows the rule of text: a message is
    # rejected, an action gets U+FFFD; keys of nested objects count too.
    items = [
        {"channel": "c", "message": {"k": "\ud800"}},
        {"channel": "c", "message": {"\udfff": 1}},
        {"channel": "c", "message": ["ok", ["\ud83d"]]},
        {"channel": "c", "message": {"k": "fine"}},
    ]
    batch = parse_envelope({"items": {"source": "Message", "data": items}})
    assert [r.index for r in batch.rejected] == [0, 1, 2]
    assert all("lone surrogate" in r.errors["message"][0] for r in batch.rejected)
    [event] = batch.events
    assert isinstance(event, MessageEvent) and event.message == '{"k":"fine"}'
    presence = parse_envelope(
        {"items": {"source": "Presence", "data": [{"channel": "c", "action": {"\ud800": "x"}}]}}
    )
    [unknown] = presence.events
    assert isinstance(unknown, PresenceEvent)
    assert unknown.raw_action == '{"\ufffd":"x"}'
    unknown.raw_action.encode("utf-8")
