"""Marshmallow schemas: the definition of an envelope and of each kind of item.

What an item may hold, which field is required, what each message says: all of it is declared
here and nowhere else. Each field reads its value with one of the :mod:`~yalgaar_receiver.wire`
functions. The receiver loads items with these schemas (or with subclasses passed as
``Receiver(presence_schema=..., message_schema=...)``); where a schema declares no hooks, it does
so with a loader derived from the declared fields (see ``docs/architecture.md``), which gives the
same result as ``Schema.load``.

``schema.load(item)`` gives the event, as the receiver builds it. The steps are public so that a
subclass can change one: :meth:`ItemSchema.load_data` is marshmallow's own ``load`` (fields,
validators and hooks), and :meth:`ItemSchema.make_event` turns what it loaded into the event.

Every schema sets ``unknown = EXCLUDE``: the events keep the fields no schema declares in
``extra``, so a field Yalgaar adds later never breaks a receiver.

This is the only module that imports marshmallow; marshmallow's ``ValidationError`` does not leave
the package (a malformed item is a :class:`~yalgaar_receiver.Rejection`, a malformed envelope an
:class:`~yalgaar_receiver.InvalidEnvelopeError`).
"""

from __future__ import annotations

import abc
import dataclasses
import functools
import typing as t

from marshmallow import EXCLUDE, Schema, ValidationError, fields

from . import _json_schema, wire
from .events import (
    BindEvent,
    Event,
    MessageEvent,
    PresenceAction,
    PresenceEvent,
    UnbindEvent,
)

__all__ = [
    "EnvelopeSchema",
    "ItemSchema",
    "MessageItemSchema",
    "PresenceItemSchema",
    "WireField",
    "envelope_json_schema",
]


class WireField(fields.Field[t.Any]):
    """A field whose value is read by a :mod:`~yalgaar_receiver.wire` function.

    The function turns the JSON value into the field's value or raises :class:`ValueError`,
    whose text becomes the field's message.
    """

    #: The value depends on the JSON value alone, so a loader may read equal texts once per
    #: batch (a batch shares a few timestamps, channels and actions).
    pure: t.ClassVar[bool] = True

    def __init__(self, reader: t.Callable[[t.Any], t.Any], **kwargs: t.Any) -> None:
        super().__init__(**kwargs)
        self.reader = reader

    def _deserialize(
        self,
        value: t.Any,
        attr: str | None,
        data: t.Mapping[str, t.Any] | None,
        **kwargs: t.Any,
    ) -> t.Any:
        try:
            return self.reader(value)
        except ValueError as error:
            raise ValidationError(str(error)) from None


class Items(fields.Field[list[t.Any]]):
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
            f"Expected a list of items, got {wire.describe(value)}: {wire.preview(value, 40)}."
        )


class EnvelopeSchema(Schema):
    """The envelope around the items: ``{"source", "clientKey", "data"}``.

    ``source`` and ``clientKey`` are loaded as they came; the parser decides what an odd value
    means (a missing source falls back to the endpoint, a key that is not a string matches
    nothing).
    """

    class Meta:
        unknown = EXCLUDE

    error_messages = {"type": "The envelope must be a JSON object."}  # noqa: RUF012

    # No default: a spelling that is absent is left out of the loaded data, so that
    # source_of() can take the first one present.
    source = fields.Raw(allow_none=True)
    # The doc's field table spells the key "sources" while its JSON says "source".
    sources = fields.Raw(allow_none=True)
    client_key = fields.Raw(data_key="clientKey", load_default=None, allow_none=True)
    data = Items(load_default=list, allow_none=True)

    #: The fields that may carry the source, in the order they are looked at.
    source_fields: t.ClassVar[tuple[str, ...]] = ("source", "sources")

    def source_of(self, data: t.Mapping[str, t.Any]) -> t.Any:
        """The source as sent, from the first of :attr:`source_fields` that was present."""
        for name in self.source_fields:
            if name in data:
                return data[name]
        return None

    @functools.cached_property
    def wire_keys(self) -> frozenset[str]:
        """The keys this schema reads: a JSON object with one of them and no ``items`` is taken
        for an envelope sent bare."""
        return frozenset(field.data_key or name for name, field in self.load_fields.items())


class ItemSchema(Schema):
    """Fields that presence and message items share, and the step from loaded data to event.

    Subclass :class:`PresenceItemSchema` or :class:`MessageItemSchema` (not this class) to add
    fields, validators or hooks. A field whose name is not a field of the event class goes to
    the event's ``extra``, loaded; so does every key of the item that no field declares, as it
    came. Hooks must leave the loaded data a mapping. To build events of a class of your own,
    override :meth:`make_event`.
    """

    class Meta:
        unknown = EXCLUDE

    error_messages = {"type": "Each item must be a JSON object."}  # noqa: RUF012

    channel = WireField(wire.read_channel, required=True)
    uuid = WireField(wire.read_uuid, load_default=None, allow_none=True)
    timestamp = WireField(wire.read_timestamp, load_default=None, allow_none=True)

    def load(
        self,
        data: t.Mapping[str, t.Any] | t.Iterable[t.Mapping[str, t.Any]],
        *,
        many: bool | None = None,
        partial: bool | t.Sequence[str] | t.AbstractSet[str] | None = None,
        unknown: str | None = None,
    ) -> t.Any:
        """Load an item (or, with ``many``, a list of them) into its event, without a client
        key: what the receiver builds, ``client_key`` aside.

        :raises marshmallow.ValidationError: the item is malformed.
        """
        loaded = self.load_data(data, many=many, partial=partial, unknown=unknown)
        if self.many if many is None else many:
            items = t.cast("t.Iterable[t.Mapping[str, t.Any]]", data)
            return [self.make_event(d, raw=r) for d, r in zip(loaded, items, strict=True)]
        return self.make_event(loaded, raw=t.cast("t.Mapping[str, t.Any]", data))

    def load_data(self, data: t.Any, **options: t.Any) -> t.Any:
        """marshmallow's ``Schema.load``: the loaded fields, validators and hooks applied."""
        return super().load(data, **options)

    @abc.abstractmethod
    def make_event(
        self, data: t.Mapping[str, t.Any], *, raw: t.Mapping[str, t.Any], client_key: str = ""
    ) -> Event:
        """Build the event of one loaded item; each item schema says which event it builds
        (marshmallow's schema class is an ``ABCMeta``, so ``ItemSchema()`` itself is refused).

        :param data: what :meth:`load_data` returned for the item.
        :param raw: the item as received.
        :param client_key: the ``clientKey`` of the item's envelope.
        """

    def extra_of(self, data: t.Mapping[str, t.Any], raw: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
        """The event's ``extra``: what was loaded that the event class has no field for (a
        field a subclass declares, a value a hook added), and the keys of ``raw`` that no field
        of this schema declares, as they came."""
        own, declared = self._event_fields, self._declared_keys
        extra = {} if own.issuperset(data) else {k: v for k, v in data.items() if k not in own}
        if not declared.issuperset(raw):
            extra.update((k, v) for k, v in raw.items() if k not in declared)
        return extra

    #: The event class whose fields :meth:`make_event` fills from the loaded data.
    event_class: t.ClassVar[type[Event]] = Event

    @functools.cached_property
    def _declared_keys(self) -> frozenset[str]:
        return frozenset(field.data_key or name for name, field in self.load_fields.items())

    @functools.cached_property
    def _event_fields(self) -> frozenset[str]:
        return frozenset(f.name for f in dataclasses.fields(self.event_class))


class PresenceItemSchema(ItemSchema):
    """One item of a *Presence* envelope: ``channel``, ``uuid``, ``timestamp``, ``action``."""

    #: Reads into ``(PresenceAction, the action's text)``; it never fails on a value.
    action = WireField(wire.read_action, required=True)

    event_class: t.ClassVar[type[Event]] = PresenceEvent

    #: The event class of each action.
    event_classes: t.ClassVar[t.Mapping[PresenceAction, type[PresenceEvent]]] = {
        PresenceAction.BIND: BindEvent,
        PresenceAction.UNBIND: UnbindEvent,
        PresenceAction.UNKNOWN: PresenceEvent,
    }

    def make_event(
        self, data: t.Mapping[str, t.Any], *, raw: t.Mapping[str, t.Any], client_key: str = ""
    ) -> PresenceEvent:
        action, raw_action = data["action"]
        # .get(): a schema built with only=, exclude= or partial= may leave a field out.
        return self.event_classes[action](
            channel=data.get("channel"),  # type: ignore[arg-type]
            uuid=data.get("uuid"),
            timestamp=data.get("timestamp"),
            action=action,
            raw_action=raw_action,
            client_key=client_key,
            raw=raw,
            extra=self.extra_of(data, raw),
        )


class MessageItemSchema(ItemSchema):
    """One item of a *Message* envelope: ``channel``, ``uuid``, ``timestamp``, ``message``."""

    message = WireField(wire.read_message, required=True)

    event_class: t.ClassVar[type[Event]] = MessageEvent

    def make_event(
        self, data: t.Mapping[str, t.Any], *, raw: t.Mapping[str, t.Any], client_key: str = ""
    ) -> MessageEvent:
        return MessageEvent(
            channel=data.get("channel"),  # type: ignore[arg-type]
            uuid=data.get("uuid"),
            timestamp=data.get("timestamp"),
            message=data.get("message"),  # type: ignore[arg-type]
            client_key=client_key,
            raw=raw,
            extra=self.extra_of(data, raw),
        )


def messages_of(error: ValidationError) -> dict[str, t.Any]:
    """marshmallow's messages as a dict: field name (or ``_schema``) to messages."""
    messages = error.messages
    if isinstance(messages, dict):
        return messages
    return {"_schema": messages if isinstance(messages, list) else [messages]}


def envelope_json_schema(
    *,
    lenient: bool = True,
    presence_schema: PresenceItemSchema | None = None,
    message_schema: MessageItemSchema | None = None,
) -> dict[str, t.Any]:
    """A JSON Schema (draft 2020-12) of a webhook body, for other languages and for API docs.

    Built from the schemas themselves: pass the ones a receiver uses (its
    ``presence_schema`` and ``message_schema``) to describe what that receiver accepts.

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
    return _json_schema.build(
        EnvelopeSchema(),
        presence_schema if presence_schema is not None else PresenceItemSchema(),
        message_schema if message_schema is not None else MessageItemSchema(),
        lenient=lenient,
    )
