"""Internal: the JSON Schema of a webhook body, built from the marshmallow schemas and ``wire``.

Which fields an item has, which are required and which may be null is read off the schema
objects; the character classes, the number pattern, the source names and the range of a
timestamp are the constants the :mod:`~yalgaar_receiver.wire` readers use. What is written here
is how each reader's rule reads in JSON Schema's language, one entry per reader; a field this
module has no entry for (one a subclass declares) may hold anything. Reached through
:func:`yalgaar_receiver.schemas.envelope_json_schema`.

Imports: the standard library and ``wire``; the schema objects are handed in.
"""

from __future__ import annotations

import typing as t
from datetime import datetime, timedelta, timezone

from . import wire

__all__ = ["build"]

_DRAFT: t.Final = "https://json-schema.org/draft/2020-12/schema"
_EPOCH: t.Final = datetime(1970, 1, 1, tzinfo=timezone.utc)
# The largest number a timestamp may be: the end of year 9999 in nanoseconds, the largest unit.
_TIMESTAMP_MAX: t.Final = (datetime.max.replace(tzinfo=timezone.utc) - _EPOCH) // timedelta(
    microseconds=1
) * 1000 + 1000
# A channel or uuid, trimmed, holds no unsafe character; around it, whitespace of any kind is
# trimmed away.
_NAME: t.Final = rf"(?:[^\s{wire.UNSAFE}](?:[^{wire.UNSAFE}]*[^\s{wire.UNSAFE}])?)"
_NAME_TEXT: t.Final = rf"^\s*{_NAME}\s*$"
_OPTIONAL_NAME_TEXT: t.Final = rf"^\s*{_NAME}?\s*$"
_UNICODE_TEXT: t.Final = rf"^[^{wire.SURROGATES}]*$"
# A timestamp as a number in text: no sign, since a negative time is refused.
_NUMBER_TEXT: t.Final = rf"^\s*\+?{wire.UNSIGNED_NUMBER}\s*$"
# ISO-8601 in its extended form; datetime.fromisoformat, which the reader calls, decides the rest
# (docs/json-schema.md lists what the two disagree on).
_ISO_TEXT: t.Final = (
    r"^\s*[0-9]{4}-[0-9]{2}-[0-9]{2}"
    r"(?:[T ][0-9]{2}(?::[0-9]{2}(?::[0-9]{2}(?:[.,][0-9]+)?)?)?"
    r"(?:[Zz]|[+-][0-9]{2}(?::?[0-9]{2})?)?)?\s*$"
)
_KINDS: t.Final = ("presence", "message", "unknown", "inferred")


class _Field(t.Protocol):
    required: bool
    allow_none: bool
    data_key: str | None


class _Schema(t.Protocol):
    @property
    def load_fields(self) -> t.Mapping[str, t.Any]: ...


def _lenient_fields() -> t.Mapping[t.Callable[[t.Any], t.Any], dict[str, t.Any]]:
    """What each reader accepts without refusing the item."""
    return {
        wire.read_channel: {
            "description": "Trimmed; numbers become text; no control characters.",
            "anyOf": [{"type": "string", "pattern": _NAME_TEXT}, {"type": "number"}],
        },
        wire.read_uuid: {
            "description": "As channel; empty means none.",
            "anyOf": [
                {"type": "string", "pattern": _OPTIONAL_NAME_TEXT},
                {"type": ["number", "null"]},
            ],
        },
        wire.read_timestamp: {
            "description": (
                "Seconds since the epoch as text or a number (milliseconds, microseconds and "
                "nanoseconds are told apart by magnitude), or ISO-8601 text; empty, 0 and null "
                "mean none."
            ),
            "anyOf": [
                {"type": "null"},
                {"type": "number", "minimum": 0, "exclusiveMaximum": _TIMESTAMP_MAX},
                {"type": "string", "pattern": r"^\s*$"},
                {"type": "string", "pattern": _NUMBER_TEXT},
                {"type": "string", "pattern": _ISO_TEXT, "format": "date-time"},
            ],
        },
        wire.read_action: {
            "description": "bind or unbind, any case; other values are delivered as unknown.",
        },
        wire.read_message: {
            "description": "Text; another JSON value is kept as JSON text.",
            "anyOf": [
                {"type": "string", "pattern": _UNICODE_TEXT},
                {"not": {"type": "string"}},
            ],
        },
    }


def _documented_fields() -> t.Mapping[t.Callable[[t.Any], t.Any], dict[str, t.Any]]:
    """What Yalgaar's doc shows for each field: a string, timestamps as digits."""
    text = {"type": "string"}
    return {
        wire.read_channel: {**text, "pattern": _NAME_TEXT, "description": "The channel name."},
        wire.read_uuid: {
            **text,
            "pattern": _OPTIONAL_NAME_TEXT,
            "description": "The client's name.",
        },
        wire.read_timestamp: {
            **text,
            "pattern": "^[0-9]+$",
            "description": "Seconds since the epoch.",
        },
        wire.read_action: {**text, "description": "bind or unbind."},
        wire.read_message: {**text, "pattern": _UNICODE_TEXT, "description": "The published text."},
    }


def _item(
    schema: _Schema,
    readers: t.Mapping[t.Callable[[t.Any], t.Any], dict[str, t.Any]],
    *,
    documented: bool,
) -> dict[str, t.Any]:
    """An item's JSON Schema, field by field as ``schema`` declares them."""
    properties: dict[str, t.Any] = {}
    required = []
    for name, field in schema.load_fields.items():
        key = field.data_key or name
        known = readers.get(getattr(field, "reader", None))  # type: ignore[arg-type]
        fragment = dict(known or {})
        if not field.allow_none and not documented:
            fragment.setdefault("not", {"type": "null"})
        properties[key] = fragment
        # The doc shows every field it knows of, always.
        if field.required or (documented and known is not None):
            required.append(key)
    return {"type": "object", "properties": properties, "required": required}


def build(
    envelope: _Schema, presence: _Schema, message: _Schema, *, lenient: bool
) -> dict[str, t.Any]:
    """The JSON Schema of a body, lenient or as documented (see ``envelope_json_schema``)."""
    if lenient:
        return _lenient(envelope, presence, message)
    return _documented(presence, message)


def _lenient(envelope: _Schema, presence: _Schema, message: _Schema) -> dict[str, t.Any]:
    readers = _lenient_fields()
    envelope_keys = sorted(field.data_key or name for name, field in envelope.load_fields.items())
    # The source after trimming, case-insensitively (ASCII letters only: JSON Schema's regular
    # expressions cannot case-fold).
    patterns = {
        kind: r"^\s*(?:"
        + "|".join(
            "".join(f"[{c.upper()}{c}]" if c.isalpha() else c for c in name)
            for name, named in wire.SOURCES.items()
            if named == kind
        )
        + r")\s*$"
        for kind in dict.fromkeys(wire.SOURCES.values())
    }

    def data(item_ref: str) -> dict[str, t.Any]:
        return {
            "description": "A list of items; one object is one item; null and {} are none.",
            "anyOf": [
                {"type": "null"},
                {"type": "array", "items": {"$ref": item_ref}},
                {"type": "object", "maxProperties": 0},
                {"$ref": item_ref},
            ],
        }

    def kind_of(key: str) -> dict[str, t.Any]:
        def named(pattern: str) -> dict[str, t.Any]:
            return {"properties": {key: {"type": "string", "pattern": pattern}}, "required": [key]}

        def then(kind: str) -> dict[str, t.Any]:
            return {"properties": {"data": {"$ref": f"#/$defs/{kind}Data"}}}

        return {
            "if": named(patterns["presence"]),
            "then": then("presence"),
            "else": {
                "if": named(patterns["message"]),
                "then": then("message"),
                "else": {"if": named(r"\S"), "then": then("unknown"), "else": then("inferred")},
            },
        }

    # The first source field that is present wins (EnvelopeSchema.source_fields).
    source_fields = list(getattr(envelope, "source_fields", ("source",)))
    choice: dict[str, t.Any] = kind_of(source_fields[-1])
    for key in reversed(source_fields[:-1]):
        choice = {"if": {"required": [key]}, "then": kind_of(key), "else": choice}

    return {
        "$schema": _DRAFT,
        "title": "Yalgaar webhook body, as yalgaar-receiver accepts it",
        "description": (
            "A body that parse_envelope() reads without refusing it and without rejecting an "
            "item. Authentication (clientKey against the configured keys), the size limits and "
            "the nesting depth are checked by the receiver, not here."
        ),
        "type": ["object", "array"],
        "if": {"type": "array"},
        "then": {"items": {"$ref": "#/$defs/envelope"}},
        "else": {
            "if": {"required": ["items"]},
            "then": {
                "properties": {
                    "items": {
                        "anyOf": [
                            {"$ref": "#/$defs/envelope"},
                            {"type": "array", "items": {"$ref": "#/$defs/envelope"}},
                            {
                                "type": "string",
                                "description": "The same, as JSON text (read once more).",
                                "contentMediaType": "application/json",
                                "contentSchema": {
                                    "anyOf": [
                                        {"$ref": "#/$defs/envelope"},
                                        {"type": "array", "items": {"$ref": "#/$defs/envelope"}},
                                    ]
                                },
                            },
                        ]
                    }
                }
            },
            "else": {
                "$ref": "#/$defs/envelope",
                "anyOf": [{"required": [k]} for k in envelope_keys],
            },
        },
        "$defs": {
            "envelope": {
                "type": "object",
                "properties": {
                    "source": {"description": "Presence or Message, any case and spacing."},
                    "sources": {"description": "Read when source is absent (the doc's typo)."},
                    "clientKey": {"description": "Checked against the configured keys."},
                    "data": {"description": "The items."},
                },
                **choice,
            },
            "presenceItem": _item(presence, readers, documented=False),
            "messageItem": _item(message, readers, documented=False),
            "unknownItem": {"type": "object", "description": "Delivered as an UnknownEvent."},
            "inferredItem": {
                "type": "object",
                "description": "No source: action means presence, else message means message.",
                "if": {"required": ["action"]},
                "then": {"$ref": "#/$defs/presenceItem"},
                "else": {"if": {"required": ["message"]}, "then": {"$ref": "#/$defs/messageItem"}},
            },
            **{f"{kind}Data": data(f"#/$defs/{kind}Item") for kind in _KINDS},
        },
    }


def _documented(presence: _Schema, message: _Schema) -> dict[str, t.Any]:
    readers = _documented_fields()
    text = {"type": "string"}
    # The doc spells each source name with a capital (``"Presence"``).
    names = {kind: kind.capitalize() for kind in dict.fromkeys(wire.SOURCES.values())}

    def envelope(kind: str) -> dict[str, t.Any]:
        return {
            "properties": {
                "source": {"const": names[kind]},
                "data": {"items": {"$ref": f"#/$defs/{kind}Item"}},
            }
        }

    return {
        "$schema": _DRAFT,
        "title": "Yalgaar webhook body, as Yalgaar documents it",
        "type": "object",
        "required": ["items"],
        "properties": {
            "items": {
                "type": "object",
                "required": ["source", "clientKey", "data"],
                "properties": {
                    "source": {"enum": list(names.values())},
                    "clientKey": {**text, "description": "The project's client key."},
                    "data": {"type": "array"},
                },
                "oneOf": [envelope(kind) for kind in names],
            }
        },
        "$defs": {
            "presenceItem": _item(presence, readers, documented=True),
            "messageItem": _item(message, readers, documented=True),
        },
    }
