"""Event records: frozen, printable without secrets, comparable."""

from __future__ import annotations

import copy
import dataclasses
import json
import pickle
import typing as t
from datetime import datetime, timezone

import pytest

from yalgaar_receiver import BindEvent, MessageEvent, PresenceAction, UnbindEvent, UnknownEvent
from yalgaar_receiver.events import ReadOnlyDict

KEY = "ck-0123456789abcdef"


def make(**overrides: object) -> BindEvent:
    fields: dict[str, object] = {
        "channel": "room",
        "uuid": "u1",
        "timestamp": datetime(2018, 3, 21, tzinfo=timezone.utc),
        "client_key": KEY,
        "raw": {"channel": "room", "secret": "x"},
        "extra": {"secret": "x"},
    }
    fields.update(overrides)
    return BindEvent(**fields)  # type: ignore[arg-type]


def test_repr_hides_the_key_and_raw() -> None:
    text = repr(make())
    assert KEY not in text
    assert "raw=" not in text
    assert "channel='room'" in text


def test_events_are_frozen_and_slotted() -> None:
    event = make()
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.channel = "other"  # type: ignore[misc]
    assert not hasattr(event, "__dict__")


def test_raw_and_extra_are_read_only_all_the_way_down() -> None:
    nested: dict[str, t.Any] = {"channel": "room", "state": {"tags": ["a", {"b": 1}]}}
    event = make(raw=nested, extra={"state": nested["state"]})
    assert event.raw == nested and isinstance(event.raw, dict)
    inner = event.raw["state"]["tags"]
    changes: list[t.Callable[[], object]] = [
        lambda: inner.append("x"),
        lambda: inner[1].__setitem__("b", 2),
        lambda: event.extra["state"].clear(),
        lambda: inner.__iadd__(["x"]),
    ]
    for change in changes:
        with pytest.raises(TypeError, match="read-only"):
            change()
    nested["state"]["tags"].append("after")  # what the event was built from is not shared
    assert event.raw["state"]["tags"] == ["a", {"b": 1}]
    mine = copy.deepcopy(event.raw)  # the way to a version to change
    mine["state"]["tags"][1]["b"] = 2
    assert mine["state"] == {"tags": ["a", {"b": 2}]}
    assert event.raw["state"]["tags"][1] == {"b": 1}
    sent = pickle.loads(pickle.dumps(event))  # as Celery carries it: still read-only
    assert sent.raw == event.raw and sent == event
    with pytest.raises(TypeError, match="read-only"):
        sent.raw["state"]["tags"].append("x")
    assert json.dumps(event.raw) == '{"channel": "room", "state": {"tags": ["a", {"b": 1}]}}'


def test_a_read_only_dict_made_by_hand_is_made_read_only_inside_too() -> None:
    event = make(raw=ReadOnlyDict({"tags": ["a"]}))
    with pytest.raises(TypeError, match="read-only"):
        event.raw["tags"].append("b")
    flat = ReadOnlyDict({"channel": "room"})
    assert make(raw=flat).raw is flat  # read-only all the way down already: not copied


def test_equality_ignores_raw_but_not_extra() -> None:
    assert make() == make(raw={"different": True})
    assert make() != make(extra={})
    assert hash(make()) == hash(make(raw={}))


def test_defaults_of_the_subclasses() -> None:
    assert make().action is PresenceAction.BIND
    unbind = UnbindEvent(channel="c", uuid=None, timestamp=None)
    assert unbind.action is PresenceAction.UNBIND
    assert (unbind.raw_action, unbind.client_key) == ("unbind", "")
    assert UnknownEvent(channel=None, uuid=None, timestamp=None).source == ""


def test_event_types() -> None:
    assert [c.event_type for c in (BindEvent, UnbindEvent, MessageEvent, UnknownEvent)] == [
        "bind",
        "unbind",
        "message",
        "unknown",
    ]
