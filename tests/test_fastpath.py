"""The fast path gives what the marshmallow schemas give: the same events and the same errors.

The reference is the schemas themselves: ``load_items(..., fast=False)`` and
``load_envelope(..., fast=False)`` load through marshmallow. Every payload file and generated
items, hostile values included, go through both and must come out the same, down to the order
of the error keys and the text of each message.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import json
import typing as t

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from marshmallow import INCLUDE, ValidationError, validates

from yalgaar_receiver import (
    Batch,
    BindEvent,
    Event,
    InvalidEnvelopeError,
    MessageEvent,
    Outcome,
    PresenceAction,
    PresenceEvent,
    Rejection,
    UnbindEvent,
    UnknownEvent,
    fastpath,
    parse_envelope,
    parsing,
    schemas,
)
from yalgaar_receiver.auth import RequestView
from yalgaar_receiver.fastpath import record_builder
from yalgaar_receiver.schemas import load_envelope, load_items_into

from .payloads import all_payloads, payload

# -- comparing results -------------------------------------------------------------------------


def same_event(fast: Event, slow: Event) -> None:
    assert type(fast) is type(slow)
    assert fast == slow
    # Out of equality, and must still match: what came over the wire, as it came.
    assert fast.raw == slow.raw
    assert type(fast.extra) is type(slow.extra)
    assert fast.client_key == slow.client_key


def same_rejection(fast: Rejection, slow: Rejection) -> None:
    assert fast == slow
    # The messages as an HTTP answer shows them: same keys in the same order, same sentences.
    assert json.dumps(fast.errors) == json.dumps(slow.errors)
    assert fast.raw == slow.raw


def same_load(
    fast: tuple[list[Event], list[Rejection]], slow: tuple[list[Event], list[Rejection]]
) -> None:
    assert len(fast[0]) == len(slow[0])
    assert len(fast[1]) == len(slow[1])
    for a, b in zip(fast[0], slow[0], strict=True):
        same_event(a, b)
    for x, y in zip(fast[1], slow[1], strict=True):
        same_rejection(x, y)


def parse(body: bytes, *, fast: bool, hint: str | None = None) -> object:
    """The batch ``parse_envelope`` makes, or the refusal it raises, with or without the fast
    path (the slow one loads envelopes and items through marshmallow only)."""
    with pytest.MonkeyPatch.context() as patch:
        if not fast:
            patch.setattr(parsing, "load_envelope", functools.partial(load_envelope, fast=False))
            patch.setattr(
                parsing, "load_items_into", functools.partial(load_items_into, fast=False)
            )
        try:
            return parse_envelope(body, source_hint=hint)
        except InvalidEnvelopeError as error:
            return error


# -- every payload file ------------------------------------------------------------------------


def test_the_payload_files_are_there() -> None:
    assert len(all_payloads()) >= 30


@pytest.mark.parametrize("hint", [None, "presence", "message"])
@pytest.mark.parametrize("name", all_payloads())
def test_every_payload_file_parses_the_same_both_ways(name: str, hint: str | None) -> None:
    fast = parse(payload(name), fast=True, hint=hint)
    slow = parse(payload(name), fast=False, hint=hint)
    assert type(fast) is type(slow)
    if isinstance(fast, InvalidEnvelopeError):
        assert isinstance(slow, InvalidEnvelopeError)
        assert str(fast) == str(slow)
        assert json.dumps(fast.messages) == json.dumps(slow.messages)
        return
    assert isinstance(fast, type(slow))
    batch, reference = t.cast(t.Any, fast), t.cast(t.Any, slow)
    assert batch.client_keys == reference.client_keys
    same_load((list(batch.events), list(batch.rejected)), (reference.events, reference.rejected))


def test_the_fast_path_is_taken_for_the_stock_schemas() -> None:
    # Otherwise the tests above would compare marshmallow with itself.
    assert schemas._FAST["presence"] is not None
    assert schemas._FAST["message"] is not None
    assert schemas.fast_loader(schemas._PRESENCE) is not None


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
            "2018-03-21T05:20:00Z", "2018-03-21 05:20", "abc", "٣", "²", "9" * 5000,
            "bind", " UNBIND ", "Leave", "kick", "orders-1", "\t\n",
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
channels = st.one_of(st.sampled_from(["orders-1", " lobby ", "7"]), json_values)
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
            "kind": json_values,
            "": json_values,
        },
    ),
    st.dictionaries(st.text(max_size=8), json_values, max_size=5),
    json_values,
)
kinds = st.sampled_from(["presence", "message", None, "unknown"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=kinds, batch=st.lists(items, max_size=6), client_key=st.text(max_size=5))
def test_generated_items_load_the_same_both_ways(
    kind: str | None, batch: list[object], client_key: str
) -> None:
    fast = schemas.load_items(kind, batch, client_key=client_key, source="S", envelope=2)
    slow = schemas.load_items(
        kind, batch, client_key=client_key, source="S", envelope=2, fast=False
    )
    same_load(fast, slow)


@settings(max_examples=200, deadline=None)
@given(
    envelope=st.one_of(
        st.fixed_dictionaries(
            {},
            optional={
                "source": json_values,
                "sources": json_values,
                "clientKey": json_values,
                "data": st.one_of(st.lists(items, max_size=3), json_values),
                "other": json_values,
            },
        ),
        json_values,
    )
)
def test_generated_envelopes_load_the_same_both_ways(envelope: object) -> None:
    def load(fast: bool) -> object:
        try:
            return schemas.load_envelope(envelope, fast=fast)
        except ValueError as error:
            return ("error", json.dumps(getattr(error, "messages", str(error))))

    assert load(True) == load(False)


def test_repeated_timestamps_and_actions_are_read_once_and_stay_right() -> None:
    # The loader remembers text per batch; a bad value must not be remembered as good.
    batch: list[object] = [
        {"channel": "a", "timestamp": "1521609600", "action": "bind"},
        {"channel": "b", "timestamp": "1521609600", "action": "bind"},
        {"channel": "c", "timestamp": "abc", "action": "Bind"},
        {"channel": "d", "timestamp": "abc", "action": "leave"},
        {"channel": "e", "timestamp": 1521609600, "action": ["bind"]},
    ]
    fast = schemas.load_items("presence", batch, client_key="k")
    same_load(fast, schemas.load_items("presence", batch, client_key="k", fast=False))
    events, rejected = fast
    assert [type(e) for e in events] == [BindEvent, BindEvent, PresenceEvent]
    assert events[0].timestamp == events[1].timestamp == events[2].timestamp
    assert [r.index for r in rejected] == [2, 3]


def test_text_read_in_one_batch_serves_the_next_and_stays_right() -> None:
    # What is remembered outlives the batch: the next one gets the same values, and what was
    # refused once is refused again (with its message), never remembered as good.
    batch: list[object] = [
        {"channel": "a", "timestamp": "1521609601", "action": "unbind"},
        {"channel": "b", "timestamp": "-5", "action": "bind"},
    ]
    first = schemas.load_items("presence", batch, client_key="k")
    second = schemas.load_items("presence", batch, client_key="k")
    same_load(second, first)
    same_load(second, schemas.load_items("presence", batch, client_key="k", fast=False))
    assert [type(e) for e in second[0]] == [UnbindEvent]
    assert [r.index for r in second[1]] == [1]


def test_remembered_text_stays_bounded_whatever_the_input() -> None:
    loader = schemas.fast_loader(schemas.PresenceItemSchema())
    assert loader is not None
    for start in range(0, 5000, 100):
        items: list[object] = [
            {"channel": "c", "timestamp": str(1521609600 + n), "action": f"act-{n}"}
            for n in range(start, start + 100)
        ]
        loader.load(items, "k", 0, [], [])
        # Emptied between batches once past the bound: at most the bound and one batch.
        assert len(loader._stamps) <= fastpath._CACHE_SIZE + 100
        assert len(loader._actions) <= fastpath._CACHE_SIZE + 100


def test_unknown_fields_are_kept_whichever_known_ones_are_missing() -> None:
    batch: list[object] = [
        {"channel": "a", "action": "bind", "z": 1},
        {"channel": "a", "action": "bind", "uuid": None, "z": 1},
        {"channel": "a", "action": "bind", "timestamp": "1", "uuid": "u", "z": 1},
        {"channel": "a", "message": "m", "timestamp": None, "z": 1, "y": 2},
    ]
    for kind in ("presence", "message"):
        fast = schemas.load_items(kind, batch, client_key="k")
        same_load(fast, schemas.load_items(kind, batch, client_key="k", fast=False))
    events, _ = schemas.load_items(None, batch, client_key="k")
    assert [e.extra for e in events] == [{"z": 1}] * 3 + [{"z": 1, "y": 2}]


def test_items_that_are_other_mappings_go_through_the_schema() -> None:
    ordered = collections.OrderedDict(channel="x", action="bind", extra_field=1)
    batch: list[object] = [ordered, ["not", "an", "object"], None]
    fast = schemas.load_items("presence", batch, client_key="k")
    same_load(fast, schemas.load_items("presence", batch, client_key="k", fast=False))
    events, rejected = fast
    assert events[0].extra == {"extra_field": 1}
    assert rejected[0].errors == {"_schema": ["Each item must be a JSON object."]}


# -- when the fast path is not taken -----------------------------------------------------------


class MyPresenceSchema(schemas.PresenceItemSchema):
    """An application's extension: one more rule on the channel."""

    @validates("channel")
    def no_admin(self, value: str, **kwargs: t.Any) -> None:
        if value == "admin":
            raise ValidationError("Not this channel.")


def test_a_subclass_is_loaded_by_marshmallow_so_its_rules_hold() -> None:
    schema = MyPresenceSchema()
    assert schemas.fast_loader(schema) is None
    with pytest.raises(ValidationError, match="Not this channel"):
        schema.load({"channel": "admin", "action": "bind"})


def test_even_a_subclass_that_changes_nothing_is_not_taken() -> None:
    class Same(schemas.MessageItemSchema):
        pass

    assert schemas.fast_loader(Same()) is None


@pytest.mark.parametrize(
    "options",
    [{"only": ("channel", "action")}, {"partial": True}, {"unknown": INCLUDE}, {"many": True}],
)
def test_a_stock_schema_built_with_options_is_not_taken(options: dict[str, t.Any]) -> None:
    assert schemas.fast_loader(schemas.PresenceItemSchema(**options)) is None


def test_a_stock_schema_built_plainly_is_taken() -> None:
    loader = schemas.fast_loader(schemas.PresenceItemSchema())
    assert loader is not None
    assert loader.rules.fields == ("channel", "uuid", "timestamp", "action")
    assert loader.rules.required == "Missing data for required field."


# -- building events ---------------------------------------------------------------------------

VALUES: dict[str, object] = {
    "channel": "c",
    "uuid": "u",
    "timestamp": None,
    "client_key": "k",
    "raw": {"channel": "c", "z": 1},
    "extra": {"z": 1},
    "action": PresenceAction.BIND,
    "raw_action": "bind",
    "message": "m",
    "source": "S",
}


@pytest.mark.parametrize("cls", [BindEvent, UnbindEvent, PresenceEvent, MessageEvent, UnknownEvent])
def test_record_builder_builds_what_the_constructor_builds(cls: type[Event]) -> None:
    names = [f.name for f in dataclasses.fields(cls)][::-1]  # any order the caller names
    built = record_builder(cls, names)(*(VALUES[n] for n in names))
    made = cls(**{n: VALUES[n] for n in names})  # type: ignore[arg-type]
    assert type(built) is cls
    assert built == made
    for name in names:
        assert getattr(built, name) == getattr(made, name)
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.channel = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("cls", "values"),
    [
        (Batch, {"events": (1,), "rejected": (2,), "client_keys": ("k", None)}),
        (Outcome, {"accepted": (1,), "rejected": (2,), "failed": (3,), "duplicates": (4,)}),
        (
            RequestView,
            {
                "method": "POST",
                "path": "/t/presence",
                "remote_addr": "127.0.0.1",
                "query": {"token": ("t",)},
                "headers": {"x": "y"},
                "basic_auth": ("u", "p"),
                "url_token": "t",
                "body": b"{}",
            },
        ),
    ],
)
def test_record_builder_builds_the_request_records_as_their_constructors(
    cls: type[t.Any], values: dict[str, t.Any]
) -> None:
    names = list(values)[::-1]
    built = record_builder(cls, names)(*(values[n] for n in names))
    made = cls(**values)
    assert type(built) is cls
    assert built == made
    assert repr(built) == repr(made)
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(built, names[0], None)


def test_record_builder_refuses_a_wrong_field_list() -> None:
    with pytest.raises(TypeError, match="other fields"):
        record_builder(MessageEvent, ["channel", "uuid"])


def test_record_builder_calls_the_constructor_when_there_is_a_post_init() -> None:
    seen: list[str] = []

    @dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
    class Checked(MessageEvent):
        def __post_init__(self) -> None:
            seen.append(self.message)

    names = [f.name for f in dataclasses.fields(Checked)]
    built = record_builder(Checked, names)(*(VALUES[n] for n in names))
    assert isinstance(built, Checked)
    assert seen == ["m"]
