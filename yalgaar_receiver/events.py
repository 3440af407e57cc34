"""Typed records of what Yalgaar sent and what the receiver made of it.

Events are frozen, slotted dataclasses: safe to hand to threads and queues, and printable without
leaking secrets. Being frozen has a price: every field is set through ``object.__setattr__``, and
building the event is the largest part of what an item costs to parse (``docs/performance.md``,
*Per item*). Every event keeps the item exactly as received in ``raw`` and the fields this package
does not know in ``extra``, so a field Yalgaar adds tomorrow is never lost. ``raw`` and
``client_key`` stay out of ``repr`` so that logging an event neither floods the log nor leaks the
key.

Events are read-only all the way down: ``raw`` and ``extra`` are :func:`frozen` when an event is
built, so a handler cannot change what a later handler sees. Their objects are dicts and their
arrays lists (``json.dumps``, ``isinstance``, equality, ``copy`` and ``pickle`` work as on the
JSON they came from) that refuse every change.

Imports: the standard library.
"""

from __future__ import annotations

import copy
import enum
import json
import typing as t
from dataclasses import dataclass, field, fields
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
    "ReadOnlyDict",
    "ReadOnlyList",
    "Rejection",
    "UnbindEvent",
    "UnknownEvent",
    "frozen",
]

_READ_ONLY: t.Final = (
    "what an event keeps from the wire stays as it came; copy.deepcopy(...) gives a copy to change"
)


class ReadOnlyDict(dict[str, t.Any]):
    """A JSON object of an event: a ``dict`` that refuses every change."""

    __slots__ = ()

    def _refuse(self, *args: t.Any, **kwargs: t.Any) -> t.NoReturn:
        raise TypeError(f"This object is read-only: {_READ_ONLY}.")

    __setitem__ = __delitem__ = __ior__ = _refuse
    clear = pop = popitem = setdefault = update = _refuse

    def __reduce__(self) -> tuple[type[ReadOnlyDict], tuple[dict[str, t.Any]]]:
        # copy, deepcopy and pickle rebuild it from a plain dict (the default way sets each
        # item on an empty instance, which this class refuses).
        return ReadOnlyDict, (dict(self),)

    def __deepcopy__(self, memo: dict[int, t.Any]) -> dict[str, t.Any]:
        # A deep copy is the one way to a version of the item to change, so it is writable.
        return {key: copy.deepcopy(item, memo) for key, item in self.items()}


class ReadOnlyList(list[t.Any]):
    """A JSON array of an event: a ``list`` that refuses every change."""

    __slots__ = ()

    def _refuse(self, *args: t.Any, **kwargs: t.Any) -> t.NoReturn:
        raise TypeError(f"This array is read-only: {_READ_ONLY}.")

    __setitem__ = __delitem__ = __iadd__ = __imul__ = _refuse
    append = extend = insert = pop = remove = clear = sort = reverse = _refuse

    def __reduce__(self) -> tuple[type[ReadOnlyList], tuple[list[t.Any]]]:
        return ReadOnlyList, (list(self),)

    def __deepcopy__(self, memo: dict[int, t.Any]) -> list[t.Any]:
        return [copy.deepcopy(item, memo) for item in self]


#: The types of JSON's scalars: a dict whose values are all of these is flat.
_SCALARS: t.Final = frozenset((str, int, float, bool, type(None)))


def frozen(value: t.Any) -> t.Any:
    """``value`` with every object and array in it read-only (:class:`ReadOnlyDict`,
    :class:`ReadOnlyList`); a value that already is read-only all the way down is given back as
    it is, anything else is copied."""
    kind = type(value)
    if kind is dict or kind is ReadOnlyDict:
        for item in value.values():
            if type(item) not in _SCALARS:
                return ReadOnlyDict({key: frozen(item) for key, item in value.items()})
        # The common item is flat: kept when read-only already, else copied in C.
        return value if kind is ReadOnlyDict else ReadOnlyDict(value)
    if isinstance(value, t.Mapping):
        return ReadOnlyDict({key: frozen(item) for key, item in value.items()})
    if isinstance(value, list):
        return ReadOnlyList([frozen(item) for item in value])
    return value


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

    def __post_init__(self) -> None:
        # Read-only all the way down, however the event was built: a handler that writes into
        # raw would otherwise change it for every later handler of the event.
        object.__setattr__(self, "raw", frozen(self.raw))
        object.__setattr__(self, "extra", frozen(self.extra))


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


class _NoDefault:
    def __repr__(self) -> str:
        return "<no default: raise>"


_NO_DEFAULT: t.Final = _NoDefault()


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageEvent(Event):
    """A client published a message (the *Message* webhook).

    :param message: the text as published. Yalgaar's SDKs only publish strings, most often JSON
        text; a structured value that arrives already decoded is kept as its compact JSON text.
        When the receiver has ``message_keys`` and one decrypts it, the text it decrypts to.
    :param encrypted: whether :attr:`message` was decrypted with one of the receiver's
        ``message_keys`` (the ciphertext stays in ``raw``).
    :param payload: what a handler's ``payload=`` schema loaded from the message; set on the
        event that handler gets, ``None`` on every other. Not compared, not serialized: a worker
        loads it again from the text.
    """

    event_type: t.ClassVar[str] = "message"

    channel: str
    message: str
    encrypted: bool = False
    payload: t.Any = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        Event.__post_init__(self)  # not super(): the slotted class is a copy made by dataclass
        if self.payload is not None:
            object.__setattr__(self, "payload", frozen(self.payload))

    def __repr__(self) -> str:
        # The text of a decrypted message stays out of logs, as a key does: it was encrypted
        # so that no one but the handlers reads it.
        shown = (
            f"{spec.name}="
            + (
                f"<{len(self.message)} characters, decrypted>"
                if spec.name == "message" and self.encrypted
                else repr(getattr(self, spec.name))
            )
            for spec in fields(self)
            if spec.repr
        )
        return f"{type(self).__qualname__}({', '.join(shown)})"

    def json(self, *, default: t.Any = _NO_DEFAULT) -> t.Any:
        """Decode :attr:`message` as JSON.

        Publishers that ``JSON.stringify`` an already-encoded string send JSON twice; a second
        layer is decoded too when the first one yields a string that is itself JSON (at most two).

        :param default: returned when the message is not JSON text, instead of raising: a
            publisher may send plain text, and a handler that raises on it fails every time.
        :raises ValueError: the message is not JSON text, and no ``default`` was given.
        """
        try:
            value = json.loads(self.message)
        except ValueError:
            if default is _NO_DEFAULT:
                raise
            return default
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
    """One item reported as refused: a malformed item, not dispatched; or a message whose
    payload a handler's schema refused, which that handler did not get (``handlers``).

    :param envelope: index of the envelope in the request (0 unless ``items`` was a list).
    :param index: index of the item within that envelope's ``data``.
    :param errors: marshmallow-shaped messages: field name to list of sentences (a payload's
        are under ``message``).
    :param raw: the item as received.
    :param handlers: for a refused payload, the names of the handlers that did not get the
        event (``module.qualname``); empty for a malformed item.
    :param kind: what the item was read as: ``"presence"``, ``"message"`` or ``"unknown"`` (an
        envelope of a source this package does not know); ``""`` when it was never read.
    """

    envelope: int
    index: int
    errors: t.Mapping[str, t.Any]
    raw: t.Any = field(default=None, repr=False, compare=False)
    handlers: tuple[str, ...] = ()
    kind: str = ""


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
    :param sources: each envelope's kind, in order: ``"presence"``, ``"message"``,
        ``"unknown"``, or ``""`` when neither the envelope nor the URL said (each item decided).
    :param sizes: how many items each envelope held, in order, valid or not.
    """

    events: tuple[Event, ...]
    rejected: tuple[Rejection, ...]
    client_keys: tuple[str | None, ...]
    sources: tuple[str, ...] = ()
    sizes: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """What :meth:`Receiver.handle <yalgaar_receiver.Receiver.handle>` did with one body.

    :param accepted: the events handed to the dispatcher.
    :param rejected: the malformed items, which were reported and not dispatched.
    :param failed: the handler calls that raised.
    :param duplicates: the accepted events that were not run because a delivery of them was
        already handled (see ``Receiver(dedupe=...)``); only those found before the answer.
    :param dead_lettered: the accepted events whose handlers failed on their last allowed
        attempt (``Receiver(max_attempts=...)``): kept as dead letters and acknowledged, so
        that the sender stops sending them; their failures are not in ``failed``.
    :param warnings: sentences about the request that refused nothing: an envelope whose
        source is not the one of the URL it came to (a dashboard set up the wrong way round).
    """

    accepted: tuple[Event, ...]
    rejected: tuple[Rejection, ...]
    failed: tuple[HandlerFailure, ...]
    duplicates: tuple[Event, ...] = ()
    dead_lettered: tuple[Event, ...] = ()
    warnings: tuple[str, ...] = ()
