"""The derived loader gives what ``Schema.load`` gives: the same events and the same messages.

The reference is marshmallow itself: a parser built with ``loader="marshmallow"`` loads every
envelope and item with ``Schema.load``. Every payload file and generated items, hostile values
included, go through both paths and must come out the same, down to the order of the error keys
and the text of each message, for the stock schemas and for subclasses that add fields.
"""

from __future__ import annotations

import collections
import json
import typing as t
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from marshmallow import (
    INCLUDE,
    Schema,
    ValidationError,
    fields,
    post_load,
    pre_load,
    validate,
    validates,
)

from yalgaar_receiver import (
    BindEvent,
    ConfigurationError,
    Event,
    InvalidEnvelopeError,
    PresenceEvent,
    Receiver,
    Rejection,
    UnbindEvent,
)
from yalgaar_receiver.parsing import Envelope, Parser
from yalgaar_receiver.schemas import ItemSchema, MessageItemSchema, PresenceItemSchema, WireField
from yalgaar_receiver.wire import read_channel

from ..payloads import all_payloads, payload

# -- comparing results -------------------------------------------------------------------------


def same_event(derived: Event, reference: Event) -> None:
    assert type(derived) is type(reference)
    assert derived == reference
    # Out of equality, and must still match: what came over the wire, as it came. In a list,
    # so that a NaN of a decoded body (the same object on both sides) equals itself.
    assert [derived.raw] == [reference.raw]
    assert derived.client_key == reference.client_key


def same_rejection(derived: Rejection, reference: Rejection) -> None:
    assert derived == reference
    # The messages as an HTTP answer shows them: same keys in the same order, same sentences.
    assert json.dumps(derived.errors) == json.dumps(reference.errors)
    assert [derived.raw] == [reference.raw]  # a NaN item equals itself (see same_event)


def parse(parser: Parser, body: object, hint: str | None = None) -> object:
    """The batch, or the refusal."""
    try:
        return parser.parse(body, source_hint=hint)
    except InvalidEnvelopeError as error:
        return error


def same_parse(derived: object, reference: object) -> None:
    assert type(derived) is type(reference)
    if isinstance(derived, InvalidEnvelopeError):
        assert isinstance(reference, InvalidEnvelopeError)
        assert str(derived) == str(reference)
        assert json.dumps(derived.messages) == json.dumps(reference.messages)
        return
    batch, expected = t.cast(t.Any, derived), t.cast(t.Any, reference)
    assert batch.client_keys == expected.client_keys
    assert len(batch.events) == len(expected.events)
    assert len(batch.rejected) == len(expected.rejected)
    for a, b in zip(batch.events, expected.events, strict=True):
        same_event(a, b)
    for x, y in zip(batch.rejected, expected.rejected, strict=True):
        same_rejection(x, y)


def parsers(**schemas: t.Any) -> tuple[Parser, Parser]:
    return Parser(**schemas), Parser(**schemas, loader="marshmallow")


STOCK = parsers()


# -- every payload file ------------------------------------------------------------------------


def test_the_payload_files_are_there() -> None:
    assert len(all_payloads()) >= 30


@pytest.mark.parametrize("hint", [None, "presence", "message"])
@pytest.mark.parametrize("name", all_payloads())
def test_every_payload_file_parses_the_same_both_ways(name: str, hint: str | None) -> None:
    derived, reference = STOCK
    same_parse(parse(derived, payload(name), hint), parse(reference, payload(name), hint))


# -- which path runs ---------------------------------------------------------------------------


def count_loads(run: t.Callable[[], object]) -> int:
    """How many times ``Schema.load`` (marshmallow's own loading) ran during ``run``."""
    with mock.patch.object(Schema, "load", autospec=True, side_effect=Schema.load) as spy:
        run()
    return spy.call_count


BODY = json.dumps(
    {
        "items": {
            "source": "Presence",
            "clientKey": "ck",
            "data": [{"channel": f"c{n}", "action": "bind"} for n in range(5)],
        }
    }
).encode()


def test_the_switch_changes_which_code_runs() -> None:
    # Otherwise every comparison here would compare marshmallow with itself, and the
    # benchmark's "marshmallow alone" figure would measure the derived path again. The parsers
    # are built inside the count: they hold the schema methods they call.
    assert Parser().derived and not Parser(loader="marshmallow").derived
    assert count_loads(lambda: Parser().parse(BODY)) == 0
    # The envelope and each of its five items.
    assert count_loads(lambda: Parser(loader="marshmallow").parse(BODY)) == 6


def test_the_receiver_reads_the_switch() -> None:
    def handle(loader: str) -> object:
        return Receiver(allow_unauthenticated=True, loader=loader).handle(BODY)

    assert count_loads(lambda: handle("derived")) == 0
    assert count_loads(lambda: handle("marshmallow")) == 6


def test_an_unknown_loader_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="loader must be one of"):
        Receiver(loader="fast")


# -- generated items, hostile values included --------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**17, max_value=10**40),
    st.just(2**63),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(
        [
            "", " ", "0", " 1521609600 ", "1521609600.5", "1521609600123", "-5", "+7", "1e3",
            "2018-03-21T05:20:00Z", "2018-03-21 05:20", "0001-01-01T00:00:00+01:00", "abc", "٣",
            "²", "9" * 5000, "bind", " UNBIND ", "Leave", "kick", "orders-1", "\t\n", "eu", "us",
        ]
    ),
)  # fmt: skip
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=12,
)
# Values that pass half of the time, so that events (not only rejections) get compared.
channels = st.one_of(st.sampled_from(["orders-1", " lobby ", "7", "admin"]), json_values)
texts = st.one_of(st.sampled_from(["bind", "Leave", '{"a": 1}', ""]), json_values)
items = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "channel": channels,
            "uuid": json_values,
            "timestamp": json_values,
            "action": texts,
            "message": texts,
            "region": st.one_of(st.sampled_from(["eu", "us", " eu ", "EU"]), json_values),
            "ref": json_values,
            "": json_values,
        },
    ),
    st.dictionaries(st.text(max_size=8), json_values, max_size=5),
    json_values,
)
envelopes = st.builds(
    lambda source, key, data: {"source": source, "clientKey": key, "data": data},
    st.sampled_from(["Presence", "Message", "", "Ably", None]),
    st.text(max_size=3),
    st.lists(items, max_size=6),
)


class RegionPresence(PresenceItemSchema):
    """An application's extension: one more field, validated, and one with a data key."""

    region = fields.Str(required=True, validate=validate.OneOf(["eu", "us"]))
    reference = fields.Int(data_key="ref", load_default=lambda: 0, allow_none=True)


def _strip(value: object) -> object:
    return value.strip() if isinstance(value, str) else value


class TrimmedMessage(MessageItemSchema):
    """Field-level pre_load and post_load functions, and a wire-read field of its own."""

    region = fields.Str(load_default="eu", pre_load=_strip, post_load=str.upper)
    ref = WireField(read_channel, allow_none=True)


CASES = {
    "stock": STOCK,
    "subclasses": parsers(presence_schema=RegionPresence(), message_schema=TrimmedMessage()),
}


@pytest.mark.parametrize("case", CASES)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.one_of(envelopes, st.lists(envelopes, max_size=3)))
def test_generated_bodies_load_the_same_both_ways(case: str, body: object) -> None:
    derived, reference = CASES[case]
    for hint in (None, "presence"):
        same_parse(parse(derived, {"items": body}, hint), parse(reference, {"items": body}, hint))


def test_the_subclasses_take_the_derived_path_and_their_rules_hold() -> None:
    derived, _ = CASES["subclasses"]
    assert derived.derived
    batch = derived.parse(
        {
            "items": {
                "source": "Presence",
                "clientKey": "k",
                "data": [
                    {"channel": "a", "action": "bind", "region": "eu", "ref": "7", "x": 1},
                    {"channel": "b", "action": "bind", "region": "mars"},
                    {"channel": "c", "action": "bind"},
                ],
            }
        }
    )
    [event] = batch.events
    # A loaded field the event has no field for goes to extra, loaded; an unknown key as it came.
    assert event.extra == {"region": "eu", "reference": 7, "x": 1}
    assert [r.errors for r in batch.rejected] == [
        {"region": ["Must be one of: eu, us."]},
        {"region": ["Missing data for required field."]},
    ]


# -- schemas the derived path leaves to marshmallow --------------------------------------------


class NoAdmin(PresenceItemSchema):
    """A hook (a method validator): only marshmallow runs it."""

    @validates("channel")
    def no_admin(self, value: str, **kwargs: t.Any) -> None:
        if value == "admin":
            raise ValidationError("Not this channel.")


class Lowered(PresenceItemSchema):
    @pre_load
    def lower(self, data: dict[str, t.Any], **kwargs: t.Any) -> dict[str, t.Any]:
        return {**data, "channel": str(data.get("channel", "")).lower()}

    @post_load
    def tag(self, data: dict[str, t.Any], **kwargs: t.Any) -> dict[str, t.Any]:
        return {**data, "tagged": True}


def test_a_schema_with_hooks_is_loaded_by_marshmallow_and_its_hooks_run() -> None:
    body = {"items": {"source": "Presence", "data": [{"channel": "admin", "action": "bind"}]}}
    # The item; the envelope is derived.
    assert count_loads(lambda: Parser(presence_schema=NoAdmin()).parse(body)) == 1
    batch = Parser(presence_schema=NoAdmin()).parse(body)
    assert [r.errors for r in batch.rejected] == [{"channel": ["Not this channel."]}]
    batch = Parser(presence_schema=Lowered()).parse(
        {"items": {"source": "Presence", "data": [{"channel": "LOBBY", "action": "bind"}]}}
    )
    [event] = batch.events
    assert event.channel == "lobby"
    assert event.extra == {"tagged": True}


@pytest.mark.parametrize(
    "options", [{"partial": True}, {"unknown": INCLUDE}, {"only": ("channel", "action")}]
)
def test_a_schema_built_with_options_loads_as_marshmallow_does(options: dict[str, t.Any]) -> None:
    schema = PresenceItemSchema(**options)
    derived = Parser(presence_schema=schema)
    reference = Parser(presence_schema=schema, loader="marshmallow")
    body = {
        "items": {
            "source": "Presence",
            "data": [{"action": "bind"}, {"channel": "a", "action": "bind", "z": 1}],
        }
    }
    same_parse(parse(derived, body), parse(reference, body))


def test_a_wrong_kind_of_schema_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="instance of PresenceItemSchema"):
        Receiver(presence_schema=MessageItemSchema())  # type: ignore[arg-type]


# -- values read once per batch ----------------------------------------------------------------


def test_repeated_values_are_read_once_per_batch_and_a_bad_one_is_never_kept() -> None:
    derived, reference = STOCK
    batch: list[object] = [
        {"channel": "a", "timestamp": "1521609600", "action": "bind"},
        {"channel": "a", "timestamp": "1521609600", "action": "bind"},
        {"channel": "c", "timestamp": "abc", "action": "Bind"},
        {"channel": "d", "timestamp": "abc", "action": "leave"},
        {"channel": "e", "timestamp": 1521609600, "action": ["bind"]},
    ]
    envelopes = [Envelope("presence", "Presence", "k", batch)]
    loaded = derived.load(envelopes)
    same_parse(loaded, reference.load(envelopes))
    assert [type(e) for e in loaded.events] == [BindEvent, BindEvent, PresenceEvent]
    assert loaded.events[0].timestamp == loaded.events[2].timestamp
    assert [r.index for r in loaded.rejected] == [2, 3]
    assert "neither a number of seconds" in loaded.rejected[1].errors["timestamp"][0]


def test_items_that_are_other_mappings_go_through_the_schema() -> None:
    derived, reference = STOCK
    ordered = collections.OrderedDict(channel="x", action="unbind", extra_field=1)
    envelopes = [Envelope("presence", "Presence", "k", [ordered, ["not", "an", "object"], None])]
    loaded = derived.load(envelopes)
    same_parse(loaded, reference.load(envelopes))
    assert [type(e) for e in loaded.events] == [UnbindEvent]
    assert loaded.events[0].extra == {"extra_field": 1}
    assert loaded.rejected[0].errors == {"_schema": ["Each item must be a JSON object."]}


def test_the_shared_item_schema_builds_no_event_itself() -> None:
    # make_event is the one step each item schema must say; the shared base is refused at once.
    with pytest.raises(TypeError, match="make_event"):
        ItemSchema()  # type: ignore[abstract]
