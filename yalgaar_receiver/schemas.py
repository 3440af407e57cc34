"""Marshmallow schemas for Yalgaar envelopes and items; the only module that imports marshmallow.

The schemas are public so that applications can document or extend them, but marshmallow stays
out of the rest of the API: :func:`load_items` turns each ``ValidationError`` into a
:class:`~yalgaar_receiver.Rejection`, and :mod:`yalgaar_receiver.parsing` turns envelope errors
into :class:`~yalgaar_receiver.InvalidEnvelopeError`. How each field's value is read is decided
in :mod:`yalgaar_receiver.wire`; the fields here only apply it.

Every schema sets ``unknown = EXCLUDE``: the events keep unknown fields in ``extra`` instead, so a
field Yalgaar adds later never breaks a receiver.

Items are not loaded through marshmallow's per-field machinery when the stock schemas are in use:
:func:`load_items` reads their rules (fields, readers, messages) off the schema objects and hands
them to :mod:`yalgaar_receiver.fastpath`, which gives the same events and the same messages in a
fraction of the time. An instance of a subclass is always loaded by marshmallow itself, so a
field, validator or hook that a subclass adds is honoured; see ``docs/performance.md``.
"""

from __future__ import annotations

import contextvars
import typing as t

from marshmallow import EXCLUDE, Schema, ValidationError, fields, post_load, pre_load

from . import fastpath, wire
from .events import (
    BindEvent,
    Event,
    MessageEvent,
    PresenceAction,
    PresenceEvent,
    Rejection,
    UnbindEvent,
    UnknownEvent,
)

__all__ = [
    "EnvelopeSchema",
    "MessageItemSchema",
    "PresenceItemSchema",
    "envelope_json_schema",
    "load_items",
]

# The client key belongs to the envelope, not the item; load_items() sets it for the items of one
# envelope so that post_load can put it on each event (marshmallow 4 has no schema context).
_client_key: contextvars.ContextVar[str] = contextvars.ContextVar("yalgaar_client_key", default="")


class _WireField(fields.Field[t.Any]):
    """A field read by one of the :mod:`~yalgaar_receiver.wire` functions."""

    def __init__(self, reader: t.Callable[[t.Any], t.Any], **kwargs: t.Any) -> None:
        super().__init__(**kwargs)
        self._reader = reader

    def _deserialize(
        self,
        value: t.Any,
        attr: str | None,
        data: t.Mapping[str, t.Any] | None,
        **kwargs: t.Any,
    ) -> t.Any:
        try:
            return self._reader(value)
        except ValueError as error:
            raise ValidationError(str(error)) from None


class _ItemSchema(Schema):
    """Fields that presence and message items share."""

    class Meta:
        unknown = EXCLUDE

    error_messages = {"type": "Each item must be a JSON object."}  # noqa: RUF012

    channel = _WireField(wire.read_channel, required=True)
    uuid = _WireField(wire.read_uuid, load_default=None, allow_none=True)
    timestamp = _WireField(wire.read_timestamp, load_default=None, allow_none=True)

    def _extra(self, original: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
        return {k: v for k, v in original.items() if k not in self.fields}


_PRESENCE_CLASSES: t.Final[t.Mapping[PresenceAction, type[PresenceEvent]]] = {
    PresenceAction.BIND: BindEvent,
    PresenceAction.UNBIND: UnbindEvent,
    PresenceAction.UNKNOWN: PresenceEvent,
}


class PresenceItemSchema(_ItemSchema):
    """One item of a *Presence* envelope: ``channel``, ``uuid``, ``timestamp``, ``action``."""

    action = _WireField(wire.read_action, required=True)

    @post_load(pass_original=True)
    def make_event(
        self, data: dict[str, t.Any], original: t.Mapping[str, t.Any], **kwargs: t.Any
    ) -> PresenceEvent:
        action, raw_action = data["action"]
        return _PRESENCE_CLASSES[action](
            channel=data["channel"],
            uuid=data["uuid"],
            timestamp=data["timestamp"],
            action=action,
            raw_action=raw_action,
            client_key=_client_key.get(),
            raw=original,
            extra=self._extra(original),
        )


class MessageItemSchema(_ItemSchema):
    """One item of a *Message* envelope: ``channel``, ``uuid``, ``timestamp``, ``message``."""

    message = _WireField(wire.read_message, required=True)

    @post_load(pass_original=True)
    def make_event(
        self, data: dict[str, t.Any], original: t.Mapping[str, t.Any], **kwargs: t.Any
    ) -> MessageEvent:
        return MessageEvent(
            channel=data["channel"],
            uuid=data["uuid"],
            timestamp=data["timestamp"],
            message=data["message"],
            client_key=_client_key.get(),
            raw=original,
            extra=self._extra(original),
        )


class _Items(fields.Field[list[t.Any]]):
    """``data``: a list of items; one object is one item; ``null`` and ``{}`` are none."""

    def _deserialize(
        self,
        value: t.Any,
        attr: str | None,
        data: t.Mapping[str, t.Any] | None,
        **kwargs: t.Any,
    ) -> list[t.Any]:
        try:
            return _read_items(value)
        except ValueError as error:
            raise ValidationError(str(error)) from None


def _read_items(value: object) -> list[t.Any]:
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        return [value] if value else []
    raise ValueError(f"Expected a list of items, got {wire.describe(value)}: {_preview(value)}.")


class EnvelopeSchema(Schema):
    """The envelope around the items: ``{"source", "clientKey", "data"}``.

    Loads into ``{"source": ..., "client_key": ..., "data": [...]}``. ``source`` and
    ``clientKey`` are loaded as they are; the receiver decides what an odd value means (a missing
    source falls back to the endpoint, a key that is not a string matches nothing).
    """

    class Meta:
        unknown = EXCLUDE

    error_messages = {"type": "The envelope must be a JSON object."}  # noqa: RUF012

    source = fields.Raw(load_default=None, allow_none=True)
    client_key = fields.Raw(data_key="clientKey", load_default=None, allow_none=True)
    data = _Items(load_default=list, allow_none=True)

    @pre_load
    def _source_alias(self, data: t.Any, **kwargs: t.Any) -> t.Any:
        if isinstance(data, dict) and "source" not in data:
            source = wire.source_of(data)
            if source is not None:
                return {**data, "source": source}
        return data


#: One schema object per kind, built once: building a schema costs more than validating an item.
_PRESENCE = PresenceItemSchema()
_MESSAGE = MessageItemSchema()
_ENVELOPE = EnvelopeSchema()


def load_envelope(envelope: object, *, fast: bool = True) -> tuple[t.Any, t.Any, list[t.Any]]:
    """Load one envelope object into its ``(source, client_key, data)`` as :class:`EnvelopeSchema`
    loads them; raise :class:`ValueError` carrying marshmallow-shaped messages.

    :param fast: read a plain ``dict`` without marshmallow (the same result, as the tests show);
        ``False`` always goes through :class:`EnvelopeSchema`.
    """
    if fast and type(envelope) is dict:
        # What EnvelopeSchema makes of a dict, without its per-field machinery: its fields are
        # Raw (any value) with a None default. Marshmallow spends about 10 µs on an envelope,
        # this well under one; every request has one.
        data = envelope.get("data")
        if type(data) is not list:
            try:
                data = [] if data is None else _read_items(data)
            except ValueError as error:
                raise _EnvelopeFieldError({"data": [str(error)]}) from None
        return wire.source_of(envelope), envelope.get("clientKey"), data
    try:
        loaded: dict[str, t.Any] = _ENVELOPE.load(envelope)  # type: ignore[arg-type]
    except ValidationError as error:
        raise _EnvelopeFieldError(_messages(error)) from None
    return loaded["source"], loaded["client_key"], loaded["data"] or []


class _EnvelopeFieldError(ValueError):
    """Carries marshmallow's messages out of this module without exposing marshmallow."""

    def __init__(self, messages: dict[str, t.Any]) -> None:
        super().__init__(messages)
        self.messages = messages


def load_items(
    kind: str | None,
    items: t.Sequence[object],
    *,
    client_key: str,
    source: str = "",
    envelope: int = 0,
    fast: bool = True,
) -> tuple[list[Event], list[Rejection]]:
    """Validate the items of one envelope and build their events.

    :param kind: ``"presence"``, ``"message"``, ``"unknown"``, or ``None`` to decide per item
        (``action`` means presence, else ``message`` means message, else unknown).
    :param source: the envelope's source name, kept on :class:`UnknownEvent`.
    :param envelope: the envelope's index, recorded in each :class:`Rejection`.
    :param fast: take the fast path for the stock schemas (the default); ``False`` loads every
        item through marshmallow, which gives the same result more slowly.
    """
    events: list[Event] = []
    rejected: list[Rejection] = []
    load_items_into(events, rejected, kind, items, client_key, source, envelope, fast)
    return events, rejected


def load_items_into(
    events: list[Event],
    rejected: list[Rejection],
    kind: str | None,
    items: t.Sequence[object],
    client_key: str,
    source: str = "",
    envelope: int = 0,
    fast: bool = True,
) -> None:
    """:func:`load_items`, appending to the caller's lists: the parser keeps one pair for all the
    envelopes of a body, and calls this positionally, once per envelope."""
    loader = _FAST.get(kind) if fast else None
    if loader is not None:
        loader.load(items, client_key, envelope, events, rejected)
        return
    presence = _FAST["presence"] if fast else None
    message = _FAST["message"] if fast else None
    token = _client_key.set(client_key)
    try:
        for index, item in enumerate(items):
            item_kind = kind or _infer_kind(item)
            loader = presence if item_kind == "presence" else message
            if item_kind in ("presence", "message") and loader is not None:
                loader.load((item,), client_key, envelope, events, rejected, index)
                continue
            try:
                if item_kind == "presence":
                    events.append(_PRESENCE.load(item))  # type: ignore[arg-type]
                elif item_kind == "message":
                    events.append(_MESSAGE.load(item))  # type: ignore[arg-type]
                else:
                    events.append(_unknown_event(item, source, client_key))
            except ValidationError as error:
                rejected.append(
                    Rejection(
                        envelope=envelope,
                        index=index,
                        errors=_messages(error),
                        raw=item,
                    )
                )
    finally:
        _client_key.reset(token)


# -- the fast path ---------------------------------------------------------------------------

#: What the fast path knows how to apply: per stock class, its fields in load order and the
#: reader each one must have. Anything else about a schema object makes it go through marshmallow.
_STOCK_FIELDS: t.Final[t.Mapping[type[Schema], tuple[tuple[str, t.Any, bool], ...]]] = {
    PresenceItemSchema: (
        ("channel", wire.read_channel, True),
        ("uuid", wire.read_uuid, False),
        ("timestamp", wire.read_timestamp, False),
        ("action", wire.read_action, True),
    ),
    MessageItemSchema: (
        ("channel", wire.read_channel, True),
        ("uuid", wire.read_uuid, False),
        ("timestamp", wire.read_timestamp, False),
        ("message", wire.read_message, True),
    ),
}


def fast_loader(schema: Schema) -> fastpath.ItemLoader | None:
    """The fast way through ``schema``, or ``None`` when only marshmallow can load it.

    Only an instance of a stock item schema class itself qualifies (a subclass never does, even
    one that changes nothing), built without options, with the stock fields as declared: the
    fast path applies exactly those rules, so it is only used where they are all there is.
    """
    stock = _STOCK_FIELDS.get(type(schema))
    if stock is None:
        return None
    return _compile(schema, stock)


def _compile(
    schema: Schema, stock: tuple[tuple[str, t.Any, bool], ...]
) -> fastpath.ItemLoader | None:
    if (
        schema.many
        or schema.partial
        or schema.only is not None
        or schema.exclude
        or schema.unknown != EXCLUDE
        or list(schema.load_fields) != [name for name, _, _ in stock]
    ):
        return None
    messages: set[tuple[str, str]] = set()
    for name, reader, required in stock:
        field = schema.load_fields[name]
        if not (
            type(field) is _WireField
            and field._reader is reader
            and field.required is required
            and field.allow_none is not required
            and (required or field.load_default is None)
            and field.data_key is None
            and not field.validators
        ):
            return None
        if required:
            texts = (field.error_messages["required"], field.error_messages["null"])
            if not all(isinstance(text, str) for text in texts):
                return None
            messages.add(t.cast("tuple[str, str]", texts))
    if len(messages) != 1:
        return None
    (required_message, null_message) = messages.pop()
    readers = [reader for _, reader, _ in stock]
    return fastpath.ItemLoader(
        fastpath.ItemRules(
            kind="presence" if isinstance(schema, PresenceItemSchema) else "message",
            fields=tuple(name for name, _, _ in stock),
            read_channel=readers[0],
            read_uuid=readers[1],
            read_timestamp=readers[2],
            read_last=readers[3],
            required=required_message,
            null=null_message,
            fallback=lambda item, client_key: _load_one(schema, item, client_key),
            presence_classes=_PRESENCE_CLASSES,
        )
    )


def _load_one(schema: Schema, item: object, client_key: str) -> Event | dict[str, t.Any]:
    """Load one item through marshmallow: its event, or its messages."""
    token = _client_key.set(client_key)
    try:
        event: Event = schema.load(item)  # type: ignore[arg-type]
        return event
    except ValidationError as error:
        return _messages(error)
    finally:
        _client_key.reset(token)


def _messages(error: ValidationError) -> dict[str, t.Any]:
    """marshmallow's messages as a dict: field name (or ``_schema``) to messages."""
    messages = error.messages
    if isinstance(messages, dict):
        return messages
    return {"_schema": messages if isinstance(messages, list) else [messages]}


def _infer_kind(item: object) -> str:
    if isinstance(item, dict):
        if "action" in item:
            return "presence"
        if "message" in item:
            return "message"
    return "unknown"


_UNKNOWN_FIELDS: t.Final = frozenset({"channel", "uuid", "timestamp"})


def _unknown_event(item: object, source: str, client_key: str) -> UnknownEvent:
    if not isinstance(item, dict):
        raise ValidationError({"_schema": [_ItemSchema.error_messages["type"]]})
    return UnknownEvent(
        source=source,
        channel=_lenient(wire.read_channel, item.get("channel")),
        uuid=_lenient(wire.read_uuid, item.get("uuid")),
        timestamp=_lenient(wire.read_timestamp, item.get("timestamp")),
        client_key=client_key,
        raw=item,
        extra={k: v for k, v in item.items() if k not in _UNKNOWN_FIELDS},
    )


_T = t.TypeVar("_T")


def _lenient(reader: t.Callable[[object], _T], value: object) -> _T | None:
    """Read an unknown item's field when it is present and valid, else ``None``."""
    if value is None:
        return None
    try:
        return reader(value)
    except ValueError:
        return None


def _preview(value: object, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


#: The fast loaders of the schema objects ``load_items`` uses, compiled once. The rules are read
#: off the schemas at import; changing the stock classes afterwards is not supported.
_FAST: t.Final[t.Mapping[str | None, fastpath.ItemLoader | None]] = {
    "presence": fast_loader(_PRESENCE),
    "message": fast_loader(_MESSAGE),
}


# -- JSON Schema export ----------------------------------------------------------------------

_DRAFT: t.Final = "https://json-schema.org/draft/2020-12/schema"

# ``source`` after trimming, case-insensitively (ASCII letters only: JSON Schema's regular
# expressions cannot case-fold).
_SOURCE_PATTERNS: t.Final = {
    kind: r"^\s*" + "".join(f"[{c.upper()}{c}]" for c in kind) + r"\s*$"
    for kind in wire.SOURCES.values()
}
# A number of seconds (or a larger unit) as text, without a sign: negative times are refused.
_NUMBER_TEXT: t.Final = r"^\s*\+?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\s*$"
# ISO-8601 in its extended form; the receiver's parser (datetime.fromisoformat) decides the rest.
_ISO_TEXT: t.Final = (
    r"^\s*[0-9]{4}-[0-9]{2}-[0-9]{2}"
    r"(?:[T ][0-9]{2}(?::[0-9]{2}(?::[0-9]{2}(?:[.,][0-9]+)?)?)?"
    r"(?:[Zz]|[+-][0-9]{2}(?::?[0-9]{2})?)?)?\s*$"
)
# A channel or uuid, trimmed, holds no control character, line separator or lone surrogate
# (wire._UNSAFE); around it, whitespace of any kind is trimmed away. Written with escapes, so the
# schema stays plain ASCII.
_UNSAFE_CLASS: t.Final = r"\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff"
_SAFE_NAME: t.Final = rf"(?:[^\s{_UNSAFE_CLASS}](?:[^{_UNSAFE_CLASS}]*[^\s{_UNSAFE_CLASS}])?)"
_NAME_TEXT: t.Final = rf"^\s*{_SAFE_NAME}\s*$"
_OPTIONAL_NAME_TEXT: t.Final = rf"^\s*{_SAFE_NAME}?\s*$"
_NO_LONE_SURROGATE: t.Final = r"^[^\ud800-\udfff]*$"
# The year 10000 in nanoseconds since the epoch: larger numbers are out of range.
_TIMESTAMP_MAX: t.Final = 253_402_300_800 * 10**9


def _lenient_schema() -> dict[str, t.Any]:
    not_null = {"not": {"type": "null"}}
    item_fields: dict[str, t.Any] = {
        "channel": {
            "description": "Trimmed; numbers become text; no control characters.",
            "anyOf": [{"type": "string", "pattern": _NAME_TEXT}, {"type": "number"}],
        },
        "uuid": {
            "description": "As channel; empty means none.",
            "anyOf": [
                {"type": "string", "pattern": _OPTIONAL_NAME_TEXT},
                {"type": ["number", "null"]},
            ],
        },
        "timestamp": {
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
        "action": {
            **not_null,
            "description": "bind or unbind, any case; other values are delivered as unknown.",
        },
        "message": {
            **not_null,
            "description": "Text; another JSON value is kept as JSON text.",
            "anyOf": [
                {"type": "string", "pattern": _NO_LONE_SURROGATE},
                {"not": {"type": "string"}},
            ],
        },
    }

    def item(fields: t.Iterable[str], schema: Schema) -> dict[str, t.Any]:
        names = list(fields)
        return {
            "type": "object",
            "properties": {name: item_fields[name] for name in names},
            "required": [n for n in names if schema.fields[n].required],
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
            "if": named(_SOURCE_PATTERNS["presence"]),
            "then": then("presence"),
            "else": {
                "if": named(_SOURCE_PATTERNS["message"]),
                "then": then("message"),
                "else": {"if": named(r"\S"), "then": then("unknown"), "else": then("inferred")},
            },
        }

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
                "anyOf": [{"required": [k]} for k in sorted(wire.ENVELOPE_KEYS)],
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
                # "source" wins over "sources"; with neither, each item says what it is.
                "if": {"required": ["source"]},
                "then": kind_of("source"),
                "else": kind_of("sources"),
            },
            "presenceItem": item(("channel", "uuid", "timestamp", "action"), _PRESENCE),
            "messageItem": item(("channel", "uuid", "timestamp", "message"), _MESSAGE),
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


_KINDS: t.Final = ("presence", "message", "unknown", "inferred")


def _documented_schema() -> dict[str, t.Any]:
    text = {"type": "string"}
    common = {
        "channel": {**text, "pattern": _NAME_TEXT, "description": "The channel name."},
        "uuid": {**text, "pattern": _OPTIONAL_NAME_TEXT, "description": "The client's name."},
        "timestamp": {**text, "pattern": "^[0-9]+$", "description": "Seconds since the epoch."},
    }

    def item(last: str, schema: dict[str, t.Any]) -> dict[str, t.Any]:
        return {
            "type": "object",
            "properties": {**common, last: schema},
            "required": [*common, last],
        }

    def envelope(source: str, item_ref: str) -> dict[str, t.Any]:
        return {
            "properties": {
                "source": {"const": source},
                "data": {"items": {"$ref": item_ref}},
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
                    "source": {"enum": ["Presence", "Message"]},
                    "clientKey": {**text, "description": "The project's client key."},
                    "data": {"type": "array"},
                },
                "oneOf": [
                    envelope("Presence", "#/$defs/presenceItem"),
                    envelope("Message", "#/$defs/messageItem"),
                ],
            }
        },
        "$defs": {
            "presenceItem": item("action", {**text, "description": "bind or unbind."}),
            "messageItem": item(
                "message",
                {**text, "pattern": _NO_LONE_SURROGATE, "description": "The published text."},
            ),
        },
    }


def envelope_json_schema(*, lenient: bool = True) -> dict[str, t.Any]:
    """A JSON Schema (draft 2020-12) of a webhook body, for other languages and for API docs.

    :param lenient: with ``True``, every body the receiver accepts without rejecting an item
        (``items`` as an object, a list or JSON text; bare envelopes; ``sources``; any case of
        ``source``; numbers for channels and timestamps; and so on). With ``False``, only the
        shape Yalgaar documents: ``{"items": {"source", "clientKey", "data": [...]}}`` with
        string fields, which is what Yalgaar sends and what :mod:`yalgaar_receiver.testing`
        builds. Where JSON Schema cannot say what the receiver does (the nesting depth, the
        calendar of an ISO date, the contents of ``items`` given as text) is listed in
        ``docs/json-schema.md``.

    A new dict each call: change it freely (add an ``$id``, say).
    """
    return _lenient_schema() if lenient else _documented_schema()
