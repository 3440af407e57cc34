"""Typed records of what Yalgaar sent and what the receiver made of it.

Events are frozen, slotted dataclasses: cheap to build (a 200-item batch builds 200 of them), safe
to hand to threads and queues, and printable without leaking secrets. Every event keeps the item
exactly as received in ``raw`` and the fields this package does not know in ``extra``, so a field
Yalgaar adds tomorrow is never lost. ``raw`` and ``client_key`` stay out of ``repr`` so that logging
an event neither floods the log nor leaks the key.

This module imports nothing but the standard library.
"""

from __future__ import annotations

import enum
import json
import typing as t
from dataclasses import dataclass, field
from datetime import datetime

__all__ = [
    "Batch",
    "BindEvent",
    "Event",
    "HandlerFailure",
    "MessageEvent",
    "Outcome",
    "PresenceAction",
    "PresenceEvent",
    "Rejection",
    "UnbindEvent",
    "UnknownEvent",
]


class PresenceAction(enum.Enum):
    """What a presence item says happened to a client on a channel."""

    BIND = "bind"
    UNBIND = "unbind"
    #: An action this package does not know; the original text is in ``raw_action``.
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Fields every event has; use one of the subclasses.

    :param channel: the channel name, trimmed; ``None`` only on :class:`UnknownEvent`.
    :param uuid: the client's id, trimmed; ``None`` when the item had none.
    :param timestamp: when it happened, timezone-aware UTC; ``None`` when the item had none.
    :param client_key: the envelope's ``clientKey`` (empty when absent); kept out of ``repr``.
    :param raw: the item exactly as received; out of ``repr`` and equality.
    :param extra: the item's fields that this package does not know.
    """

    #: Short name of the event kind, used in logs and serialised forms.
    event_type: t.ClassVar[str] = "event"

    channel: str | None
    uuid: str | None
    timestamp: datetime | None
    client_key: str = field(default="", repr=False)
    raw: t.Mapping[str, t.Any] = field(default_factory=dict, repr=False, compare=False)
    # Excluded from the hash only: a dict cannot be hashed, but two events that differ in an
    # unknown field are still different events.
    extra: t.Mapping[str, t.Any] = field(default_factory=dict, hash=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class PresenceEvent(Event):
    """A client bound to or unbound from a channel (the *Presence* webhook).

    A plain ``PresenceEvent`` carries an action this package does not know
    (``action is PresenceAction.UNKNOWN``); known actions arrive as :class:`BindEvent` and
    :class:`UnbindEvent`.

    :param raw_action: the action as received; JSON text when it was not a string.
    """

    event_type: t.ClassVar[str] = "presence"

    channel: str
    action: PresenceAction = PresenceAction.UNKNOWN
    raw_action: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class BindEvent(PresenceEvent):
    """A client subscribed to a channel."""

    event_type: t.ClassVar[str] = "bind"

    action: PresenceAction = PresenceAction.BIND
    raw_action: str = "bind"


@dataclass(frozen=True, slots=True, kw_only=True)
class UnbindEvent(PresenceEvent):
    """A client unsubscribed from a channel, or its connection timed out."""

    event_type: t.ClassVar[str] = "unbind"

    action: PresenceAction = PresenceAction.UNBIND
    raw_action: str = "unbind"


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageEvent(Event):
    """A client published a message (the *Message* webhook).

    :param message: the text as published. Yalgaar's SDKs only publish strings, most often JSON
        text; a structured value that arrives already decoded is kept as its compact JSON text.
    """

    event_type: t.ClassVar[str] = "message"

    channel: str
    message: str

    def json(self) -> t.Any:
        """Decode :attr:`message` as JSON.

        Publishers that ``JSON.stringify`` an already-encoded string send JSON twice; a second
        layer is decoded too when the first one yields a string that is itself JSON (at most two).

        :raises ValueError: the message is not JSON text.
        """
        value = json.loads(self.message)
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                return value
        return value


@dataclass(frozen=True, slots=True, kw_only=True)
class UnknownEvent(Event):
    """An item from an envelope whose ``source`` this package does not know.

    Delivered rather than refused: refusing would make the sender retry something that can never
    succeed. ``channel``, ``uuid`` and ``timestamp`` are filled when they are present and valid.

    :param source: the envelope's ``source`` as received (``""`` when there was none).
    """

    event_type: t.ClassVar[str] = "unknown"

    source: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Rejection:
    """One malformed item, reported instead of dispatched.

    :param envelope: index of the envelope in the request (0 unless ``items`` was a list).
    :param index: index of the item within that envelope's ``data``.
    :param errors: marshmallow-shaped messages: field name to list of sentences.
    :param raw: the item as received.
    """

    envelope: int
    index: int
    errors: t.Mapping[str, list[str]]
    raw: t.Any = field(default=None, repr=False, compare=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class HandlerFailure:
    """A handler or signal subscriber that raised while an event was dispatched."""

    event: Event
    handler: t.Callable[..., t.Any]
    error: BaseException


@dataclass(frozen=True, slots=True, kw_only=True)
class Batch:
    """What :func:`~yalgaar_receiver.parse_envelope` read from one body.

    :param events: the valid items as typed events, in the order of the body.
    :param rejected: the malformed items.
    :param client_keys: each envelope's ``clientKey``, in order; ``None`` when it was missing
        or not a string.
    """

    events: tuple[Event, ...]
    rejected: tuple[Rejection, ...]
    client_keys: tuple[str | None, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """What :meth:`Receiver.handle <yalgaar_receiver.Receiver.handle>` did with one body.

    :param accepted: the events handed to the dispatcher.
    :param rejected: the malformed items, which were reported and not dispatched.
    :param failed: the handler calls that raised.
    :param duplicates: the accepted events that were not run because a delivery of them was
        already handled (see ``Receiver(dedupe=...)``); only those found before the answer.
    """

    accepted: tuple[Event, ...]
    rejected: tuple[Rejection, ...]
    failed: tuple[HandlerFailure, ...]
    duplicates: tuple[Event, ...] = ()
