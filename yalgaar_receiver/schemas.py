"""Marshmallow schemas for Yalgaar envelopes and items; the only module that imports marshmallow.

The schemas are public so that applications can document or extend them, but marshmallow stays
out of the rest of the API: :func:`load_items` turns each ``ValidationError`` into a
:class:`~yalgaar_receiver.Rejection`, and :mod:`yalgaar_receiver.parsing` turns envelope errors
into :class:`~yalgaar_receiver.InvalidEnvelopeError`. How each field's value is read is decided
in :mod:`yalgaar_receiver.wire`; the fields here only apply it.

Every schema sets ``unknown = EXCLUDE``: the events keep unknown fields in ``extra`` instead, so a
field Yalgaar adds later never breaks a receiver.
"""

from __future__ import annotations

import contextvars
import typing as t

from marshmallow import EXCLUDE, Schema, ValidationError, fields, post_load, pre_load

from . import wire
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
        if isinstance(value, list):
            return value
        if isinstance(value, dict):
            return [value] if value else []
        raise ValidationError(
            f"Expected a list of items, got {wire.describe(value)}: {_preview(value)}."
        )


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
        if isinstance(data, dict) and "source" not in data and "sources" in data:
            return {**data, "source": data["sources"]}
        return data


#: One schema object per kind, built once: building a schema costs more than validating an item.
_PRESENCE = PresenceItemSchema()
_MESSAGE = MessageItemSchema()
_ENVELOPE = EnvelopeSchema()


def load_envelope(envelope: object) -> dict[str, t.Any]:
    """Load one envelope object; raise :class:`ValueError` carrying marshmallow-shaped messages."""
    try:
        loaded: dict[str, t.Any] = _ENVELOPE.load(envelope)  # type: ignore[arg-type]
    except ValidationError as error:
        raise _EnvelopeFieldError(_messages(error)) from None
    if loaded["data"] is None:
        loaded["data"] = []
    return loaded


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
) -> tuple[list[Event], list[Rejection]]:
    """Validate the items of one envelope and build their events.

    :param kind: ``"presence"``, ``"message"``, ``"unknown"``, or ``None`` to decide per item
        (``action`` means presence, else ``message`` means message, else unknown).
    :param source: the envelope's source name, kept on :class:`UnknownEvent`.
    :param envelope: the envelope's index, recorded in each :class:`Rejection`.
    """
    events: list[Event] = []
    rejected: list[Rejection] = []
    token = _client_key.set(client_key)
    try:
        for index, item in enumerate(items):
            item_kind = kind or _infer_kind(item)
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
    return events, rejected


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
