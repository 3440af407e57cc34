"""The fast way through the stock item schemas: the same events and errors, one loop per batch.

Marshmallow's per-field machinery (a getter closure, an error store, hooks and validators looked up
for every field of every item) costs about thirty times what ``json.loads`` spends on the item, and
it is most of what a 200-item batch costs (see ``docs/performance.md``). The schemas in
:mod:`yalgaar_receiver.schemas` stay the definition; :func:`~yalgaar_receiver.schemas.load_items`
reads their rules off the stock schema objects into an :class:`ItemRules` and lets
:class:`ItemLoader` apply them to the whole list in one loop, calling the same
:mod:`~yalgaar_receiver.wire` readers the schema fields call.

What must hold, and is tested on every payload file and on generated items: for every item this
loader builds an event equal to the schema's (same class, same fields) or a rejection with the
same messages (same keys, same order, same text). Anything the loop does not read itself (an item
that is not exactly a ``dict``) goes to the schema.

This module imports nothing but the standard library, :mod:`~yalgaar_receiver.wire` and
:mod:`~yalgaar_receiver.events`; it is internal.
"""

from __future__ import annotations

import dataclasses
import types
import typing as t
from datetime import datetime

from .events import Event, MessageEvent, PresenceAction, PresenceEvent, Rejection

__all__ = ["ItemLoader", "ItemRules", "record_builder"]

#: How many timestamp texts (and, apart, action texts) an :class:`ItemLoader` keeps read.
_CACHE_SIZE: t.Final = 1024

#: Marks a field that the item does not have (``None`` is a value: JSON ``null``).
_MISSING: t.Final = object()

R = t.TypeVar("R")

#: The outcome of an item the loop hands to the schema: an event, or the schema's messages.
Fallback = t.Callable[[object, str], "Event | dict[str, t.Any]"]


@dataclasses.dataclass(frozen=True, slots=True)
class ItemRules:
    """What a stock item schema does, read off the schema object by ``schemas.py``.

    :param kind: ``"presence"`` or ``"message"``: which of the two stock schemas this is.
    :param fields: the schema's field names, in the order marshmallow loads (and reports) them.
    :param read_channel: the reader of the ``channel`` field, and so on for the others; the
        last field is ``action`` for presence and ``message`` for messages.
    :param required: the message of a required field that is missing.
    :param null: the message of a required field that is ``null``.
    :param fallback: loads one item through the schema itself.
    :param presence_classes: the event class of each action, as the schema's ``post_load``
        picks it (presence only).
    """

    kind: str
    fields: tuple[str, ...]
    read_channel: t.Callable[[t.Any], str]
    read_uuid: t.Callable[[t.Any], str | None]
    read_timestamp: t.Callable[[t.Any], datetime | None]
    read_last: t.Callable[[t.Any], t.Any]
    required: str
    null: str
    fallback: Fallback
    presence_classes: t.Mapping[PresenceAction, type[PresenceEvent]] = dataclasses.field(
        default_factory=dict
    )


# The order in which the loop passes field values to a builder.
_COMMON_ORDER: t.Final = ("channel", "uuid", "timestamp", "client_key", "raw", "extra")
_PRESENCE_ORDER: t.Final = (*_COMMON_ORDER, "action", "raw_action")
_MESSAGE_ORDER: t.Final = (*_COMMON_ORDER, "message")


class ItemLoader:
    """Validates a list of items and builds their events with one :class:`ItemRules`."""

    def __init__(self, rules: ItemRules) -> None:
        if rules.kind not in ("presence", "message"):
            raise ValueError(f"No fast loader for {rules.kind!r} items.")
        self.rules = rules
        self._readers = (rules.read_channel, rules.read_uuid, rules.read_timestamp, rules.read_last)
        self._known = frozenset(rules.fields)
        self._last = rules.fields[-1]
        self._presence = rules.kind == "presence"
        self._build_message = record_builder(MessageEvent, _MESSAGE_ORDER)
        self._build_presence = {
            action: record_builder(cls, _PRESENCE_ORDER)
            for action, cls in rules.presence_classes.items()
        }
        # Text read once is kept for later batches too: Yalgaar stamps items in whole seconds and
        # sends every 2 s, so consecutive requests share timestamps, and there are few actions.
        # What is kept is immutable (a datetime, an enum member, a string) and bounded: the
        # caches are emptied when they grow past _CACHE_SIZE, so junk input cannot fill memory.
        self._stamps: dict[str, datetime | None] = {}
        self._actions: dict[str, tuple[t.Callable[..., Event], PresenceAction, str]] = {}

    def load(
        self,
        items: t.Iterable[object],
        client_key: str,
        envelope: int,
        events: list[Event],
        rejected: list[Rejection],
        first_index: int = 0,
    ) -> None:
        """Append the events of valid items to ``events`` and a rejection per bad one.

        :param first_index: the index of the first of ``items`` in its envelope's ``data``.
        """
        rules = self.rules
        read_channel, read_uuid, read_timestamp, read_last = self._readers
        last = self._last
        known = self._known
        stamps = self._stamps
        actions = self._actions
        if len(stamps) > _CACHE_SIZE or len(actions) > _CACHE_SIZE:
            # Between batches only: one batch adds at most its own items (max_items).
            stamps.clear()
            actions.clear()
        presence = self._presence
        build_presence = self._build_presence
        build_message = self._build_message
        add_event = events.append

        for index, item in enumerate(items, first_index):
            if type(item) is not dict:
                # Mappings of other types and non-objects: the schema decides and words it.
                outcome = rules.fallback(item, client_key)
                if isinstance(outcome, Event):
                    events.append(outcome)
                else:
                    rejected.append(
                        Rejection(envelope=envelope, index=index, errors=outcome, raw=item)
                    )
                continue

            # Each field as marshmallow treats it: a required one may be neither missing nor
            # null; an optional one is None when missing or null; any other value goes to the
            # field's reader, whose ValueError is the field's message. Printable text takes a
            # shortcut where the reader's rule for it is a one-liner (the tests hold the two
            # together); anything else goes to the reader.
            errors: dict[str, list[str]] = {}
            known_keys = 2

            channel: t.Any = item.get("channel", _MISSING)
            if type(channel) is str and (text := channel.strip()) and text.isprintable():
                channel = text
            elif channel is _MISSING:
                errors["channel"] = [rules.required]
            elif channel is None:
                errors["channel"] = [rules.null]
            else:
                try:
                    channel = read_channel(channel)
                except ValueError as error:
                    errors["channel"] = [str(error)]

            uuid: t.Any = item.get("uuid", _MISSING)
            if type(uuid) is str and (text := uuid.strip()).isprintable():
                uuid = text or None
                known_keys += 1
            elif uuid is _MISSING:
                uuid = None
            elif uuid is not None:
                known_keys += 1
                try:
                    uuid = read_uuid(uuid)
                except ValueError as error:
                    errors["uuid"] = [str(error)]
            else:
                known_keys += 1

            stamp: t.Any = item.get("timestamp", _MISSING)
            if stamp is _MISSING:
                stamp = None
            else:
                known_keys += 1
                seen = stamps.get(stamp, _MISSING) if type(stamp) is str else _MISSING
                if seen is not _MISSING:
                    stamp = seen
                elif stamp is not None:
                    try:
                        moment = read_timestamp(stamp)
                    except ValueError as error:
                        errors["timestamp"] = [str(error)]
                    else:
                        if type(stamp) is str:
                            stamps[stamp] = moment
                        stamp = moment

            value: t.Any = item.get(last, _MISSING)
            if value is _MISSING:
                errors[last] = [rules.required]
            elif value is None:
                errors[last] = [rules.null]
            elif presence and type(value) is str:
                # With the action goes its event class's builder: looking it up by the enum
                # member per item would hash the member in Python.
                seen_action = actions.get(value)
                if seen_action is None:
                    action, raw_action = read_last(value)  # never fails on text
                    seen_action = (build_presence[action], action, raw_action)
                    actions[value] = seen_action
                value = seen_action
            elif type(value) is str and value.isascii():
                pass  # a message: read_message() gives ASCII text back as it is
            else:
                try:
                    value = read_last(value)
                except ValueError as error:
                    errors[last] = [str(error)]
                else:
                    if presence:
                        value = (build_presence[value[0]], *value)

            if errors:
                rejected.append(Rejection(envelope=envelope, index=index, errors=errors, raw=item))
                continue
            # An item with no more keys than the known fields it has holds no unknown ones.
            extra = (
                {} if len(item) == known_keys else {k: v for k, v in item.items() if k not in known}
            )
            if presence:
                build, action, raw_action = value
                add_event(build(channel, uuid, stamp, client_key, item, extra, action, raw_action))
            else:
                add_event(build_message(channel, uuid, stamp, client_key, item, extra, value))


def record_builder(cls: type[R], names: t.Sequence[str]) -> t.Callable[..., R]:
    """A function that builds a ``cls`` from the values of the fields ``names``, in that order.

    A frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``, which costs
    as much as the rest of an item's validation put together; and every request builds a
    :class:`~yalgaar_receiver.Batch` and an :class:`~yalgaar_receiver.Outcome` the same way.
    The records are slotted, so this sets the slots directly and builds the same object (the
    tests compare it with ``cls(...)``). A class that is not a plain slotted dataclass without
    ``__post_init__`` gets its constructor.

    The function is written out for its fields, as ``dataclasses`` writes ``__init__``: a loop
    over the setters costs half again.
    """
    if sorted(names) != sorted(f.name for f in dataclasses.fields(cls)):  # type: ignore[arg-type]
        raise TypeError(f"{cls.__name__} has other fields than {names}.")
    found = [_slot_setter(cls, name) for name in names]
    setters = [setter for setter in found if setter is not None]
    if len(setters) != len(names) or hasattr(cls, "__post_init__"):

        def construct(*values: t.Any) -> R:
            return cls(**dict(zip(names, values, strict=True)))

        return construct
    values = ", ".join(f"v{i}" for i in range(len(names)))
    lines = [f"def build({values}):", "    record = new(cls)"]
    lines += [f"    s{i}(record, v{i})" for i in range(len(names))]
    lines.append("    return record")
    namespace: dict[str, t.Any] = {"new": object.__new__, "cls": cls}
    namespace.update((f"s{i}", setter) for i, setter in enumerate(setters))
    exec("\n".join(lines), namespace)  # only names made from field positions
    build: t.Callable[..., R] = namespace["build"]
    build.__qualname__ = f"record_builder.<{cls.__name__}>"
    return build


def _slot_setter(cls: type, name: str) -> t.Callable[[object, object], None] | None:
    """The ``__set__`` of the slot that holds ``name`` on ``cls``, if a slot does."""
    owner = next((c for c in cls.__mro__ if name in vars(c)), object)
    slot = vars(owner).get(name)
    if isinstance(slot, types.MemberDescriptorType):
        return slot.__set__
    return None
