"""A versioned JSON form of each event, for queues, task brokers and dead-letter files.

An event that leaves the process (a Celery task, a dead letter) travels as a JSON object; the
process that reads it rebuilds the same typed event, so handlers see exactly what they would have
seen in the request. Version 1 of the form, field by field:

=============== ======================================================================
``v``           ``1``, the version of this form; a reader refuses a version it does not know
``type``        the event kind: ``bind``, ``unbind``, ``presence`` (an unknown action),
                ``message`` or ``unknown`` (an unknown source); ``Event.event_type``
``channel``     text, or ``null`` (only on ``unknown``)
``uuid``        text or ``null``
``timestamp``   ISO-8601 text with microseconds and offset (``datetime.isoformat``), or
                ``null``; read back to the same instant, timezone and microsecond
``client_key``  the envelope's ``clientKey`` (``""`` when absent)
``raw``         the item exactly as received
``extra``       the item's fields this package does not know
``action``      presence kinds only: ``bind``, ``unbind`` or ``unknown``
``raw_action``  presence kinds only: the action as received
``message``     ``message`` only: the text as published (decrypted, when it was encrypted)
``encrypted``   ``message`` only: ``true`` when the text was decrypted; absent reads as ``false``
``source``      ``unknown`` only: the envelope's ``source`` as received
=============== ======================================================================

Rules that keep old and new processes talking during a rolling upgrade: a reader ignores keys it
does not know, so adding a key keeps ``v`` at 1; removing a key or changing what one means makes
a new version, and readers keep reading the old one. A message's ``payload`` is not written: the
reader's handlers load it again from the text. ``raw`` and ``extra`` hold what a JSON
decoder produced, so they are written as they are; a non-finite number that Python's decoder let
through (``NaN``) is written the way Python writes it, which Python, Celery and kombu read back.

Imports: the standard library and :mod:`yalgaar_receiver.events`.
"""

from __future__ import annotations

import json
import typing as t
from datetime import datetime

from ..events import (
    BindEvent,
    Event,
    MessageEvent,
    PresenceAction,
    PresenceEvent,
    UnbindEvent,
    UnknownEvent,
)

__all__ = ["FORMAT_VERSION", "dumps", "event_from_dict", "event_to_dict", "loads"]

#: The version written by :func:`event_to_dict`; the only one :func:`event_from_dict` reads.
FORMAT_VERSION: t.Final = 1

# One class per ``type``; a subclass an application defines travels as its nearest known kind.
_CLASSES: t.Final[t.Mapping[str, type[Event]]] = {
    cls.event_type: cls
    for cls in (BindEvent, UnbindEvent, PresenceEvent, MessageEvent, UnknownEvent)
}


def event_to_dict(event: Event) -> dict[str, t.Any]:
    """The JSON-ready form of ``event`` (see the module docstring).

    :raises TypeError: ``event`` is not of a kind this module knows.
    """
    kind = _kind(event)
    data: dict[str, t.Any] = {
        "v": FORMAT_VERSION,
        "type": kind,
        "channel": event.channel,
        "uuid": event.uuid,
        "timestamp": None if event.timestamp is None else event.timestamp.isoformat(),
        "client_key": event.client_key,
        "raw": event.raw,
        "extra": event.extra,
    }
    if isinstance(event, PresenceEvent):
        data["action"] = event.action.value
        data["raw_action"] = event.raw_action
    elif isinstance(event, MessageEvent):
        data["message"] = event.message
        if event.encrypted:
            data["encrypted"] = True
    elif isinstance(event, UnknownEvent):
        data["source"] = event.source
    return data


def event_from_dict(data: t.Mapping[str, t.Any]) -> Event:
    """Rebuild the event that :func:`event_to_dict` wrote.

    :raises ValueError: ``data`` is not the form of an event, or has a version this release
        does not read (upgrade the package on the reading side).
    """
    if not isinstance(data, t.Mapping):
        raise ValueError(f"A serialized event is a JSON object, not {type(data).__name__}.")
    version = data.get("v")
    if version != FORMAT_VERSION:
        raise ValueError(
            f"Serialized event version {version!r} is not supported; this release reads "
            f"version {FORMAT_VERSION}. Upgrade yalgaar-receiver where events are read."
        )
    kind = data.get("type")
    cls = _CLASSES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ValueError(
            f"Unknown serialized event type {kind!r}; expected one of {sorted(_CLASSES)}."
        )
    try:
        fields: dict[str, t.Any] = {
            "channel": _optional_text(data, "channel"),
            "uuid": _optional_text(data, "uuid"),
            "timestamp": _timestamp(data.get("timestamp")),
            "client_key": _text(data, "client_key"),
            "raw": _mapping(data, "raw"),
            "extra": _mapping(data, "extra"),
        }
        if issubclass(cls, PresenceEvent):
            fields["action"] = PresenceAction(data["action"])
            fields["raw_action"] = _text(data, "raw_action")
        elif issubclass(cls, MessageEvent):
            fields["message"] = _text(data, "message")
            fields["encrypted"] = data.get("encrypted", False)
            if not isinstance(fields["encrypted"], bool):
                raise ValueError("The serialized field 'encrypted' must be true or false.")
        elif issubclass(cls, UnknownEvent):
            fields["source"] = _text(data, "source")
        if cls is not UnknownEvent and fields["channel"] is None:
            raise ValueError(f"A {kind} event needs a channel.")
    except KeyError as error:
        raise ValueError(f"The serialized {kind} event has no {error.args[0]!r}.") from None
    return cls(**fields)


def dumps(event: Event) -> str:
    """:func:`event_to_dict` as compact JSON text (non-ASCII characters kept as they are)."""
    return json.dumps(event_to_dict(event), separators=(",", ":"), ensure_ascii=False)


def loads(text: str | bytes) -> Event:
    """Read the JSON text :func:`dumps` wrote.

    :raises ValueError: the text is not JSON, or not a serialized event.
    """
    return event_from_dict(json.loads(text))


def _kind(event: Event) -> str:
    for cls in type(event).__mro__:
        kind = getattr(cls, "event_type", None)
        if isinstance(kind, str) and _CLASSES.get(kind) is cls:
            return kind
    raise TypeError(f"Cannot serialize {type(event).__name__}: it is no kind of event this knows.")


def _text(data: t.Mapping[str, t.Any], key: str) -> str:
    value = data[key]
    if not isinstance(value, str):
        raise ValueError(f"The serialized field {key!r} must be text, not {value!r}.")
    return value


def _optional_text(data: t.Mapping[str, t.Any], key: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"The serialized field {key!r} must be text or null, not {value!r}.")
    return value


def _mapping(data: t.Mapping[str, t.Any], key: str) -> t.Mapping[str, t.Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ValueError(f"The serialized field {key!r} must be an object, not {value!r}.")
    return value


def _timestamp(value: object) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"The serialized timestamp must be ISO-8601 text, not {value!r}.")
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"The serialized timestamp {value!r} is not ISO-8601.") from None
