"""``parse_envelope()``: one webhook body in, typed events out; no I/O, no auth, no dispatch.

Reading happens in two steps so that the receiver can refuse a request cheaply before it pays for
validating every item: :meth:`Parser.read` decodes the JSON and finds the envelopes (the body is
refused as a whole here), then :meth:`Parser.load` validates the items (a bad item is only
rejected). :func:`parse_envelope` runs both.

Accepted shapes, liberal because the sender's own doc disagrees with itself:

* ``{"items": {...}}`` (the doc), ``{"items": [{...}, ...]}``, ``items`` as JSON text holding
  either, a bare ``{"source", "clientKey", "data"}``, and a top-level list of bare envelopes;
* any Content-Type; UTF-8 with or without a byte-order mark.

A JSON object that has a key twice is refused (``json`` would keep the last value silently, and a
second value could hide the first from a check), and so is nesting deeper than ``max_depth``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import typing as t

from . import settings, wire
from ._loader import Loader
from .encryption import UNDECRYPTABLE, MessageKeys
from .events import Batch, Event, MessageEvent, Rejection, UnknownEvent
from .exceptions import ConfigurationError, InvalidEnvelopeError
from .schemas import EnvelopeSchema, ItemSchema, MessageItemSchema, PresenceItemSchema

__all__ = ["LOADERS", "Envelope", "Parser", "batch_of", "parse_envelope"]

#: The ways items can be loaded: ``"derived"`` (a loader derived from the schemas' fields,
#: wherever it gives what ``Schema.load`` gives) or ``"marshmallow"`` (``Schema.load`` alone).
LOADERS: t.Final = ("derived", "marshmallow")

_BOM: t.Final = b"\xef\xbb\xbf"


class Envelope(t.NamedTuple):
    """One envelope found in a body, before its items are validated."""

    #: ``"presence"``, ``"message"`` or ``"unknown"``; ``None`` when neither the envelope nor
    #: the endpoint says, and each item decides.
    kind: str | None
    #: The ``source`` text as received (``""`` when absent or not a string).
    source: str
    #: The ``clientKey`` when it is a string, else ``None``.
    client_key: str | None
    #: The ``data`` items, not yet validated.
    items: list[t.Any]


class Parser:
    """Reads bodies with one set of schemas.

    :param presence_schema: loads the items of Presence envelopes; a
        :class:`~yalgaar_receiver.schemas.PresenceItemSchema` (or an instance of a subclass of
        it). The stock one by default.
    :param message_schema: the same for Message envelopes
        (:class:`~yalgaar_receiver.schemas.MessageItemSchema`).
    :param max_depth: refuse JSON nested deeper than this (every array and object counts one
        level, the outermost is level 1).
    :param loader: one of :data:`LOADERS`.
    :param message_keys: decrypt each message with these
        (:class:`~yalgaar_receiver.encryption.MessageKeys`); ``None`` reads messages as they are.
    :param undecryptable: with ``message_keys``, what becomes of a message none of them
        decrypts: ``"reject"`` it as an item, or ``"deliver"`` it as it came
        (:data:`~yalgaar_receiver.encryption.UNDECRYPTABLE`).
    :raises ConfigurationError: a schema of the wrong kind, or an unknown ``loader`` or
        ``undecryptable``.
    """

    def __init__(
        self,
        *,
        presence_schema: PresenceItemSchema | None = None,
        message_schema: MessageItemSchema | None = None,
        max_depth: int = 64,
        loader: str = "derived",
        message_keys: MessageKeys | None = None,
        undecryptable: str = "reject",
    ) -> None:
        derive = settings.choice(loader, "loader", LOADERS) == "derived"
        self.message_keys = message_keys
        self.undecryptable = settings.choice(undecryptable, "undecryptable", UNDECRYPTABLE)
        self.max_depth = max_depth
        self.envelope_schema = EnvelopeSchema()
        self._envelope = Loader(self.envelope_schema, derive=derive)
        self._schemas: dict[str, ItemSchema] = {
            "presence": _schema(presence_schema, PresenceItemSchema, "presence_schema"),
            "message": _schema(message_schema, MessageItemSchema, "message_schema"),
        }
        # Each kind's loader, and the schema's make_event beside it.
        self._items: dict[str, tuple[Loader, t.Callable[..., Event]]] = {
            kind: (Loader(schema, schema.load_data, derive=derive), schema.make_event)
            for kind, schema in self._schemas.items()
        }

    @property
    def kinds(self) -> tuple[str, ...]:
        """The kinds of item this parser loads with a schema: ``("presence", "message")``."""
        return tuple(self._items)

    @property
    def derived(self) -> bool:
        """Whether items and envelopes are loaded by the derived loader (where it applies)."""
        return self._envelope.derived

    def schema(self, kind: str) -> ItemSchema:
        """The schema that loads items of ``kind`` (``"presence"`` or ``"message"``)."""
        return self._schemas[kind]

    def parse(self, body: bytes | str | object, *, source_hint: str | None = None) -> Batch:
        """:meth:`read`, then :meth:`load`."""
        return self.load(self.read(body, source_hint=source_hint))

    def read(self, body: bytes | str | object, *, source_hint: str | None = None) -> list[Envelope]:
        """Decode a body and find its envelopes; the items are not validated yet.

        :raises InvalidEnvelopeError: not JSON, too deep, or no envelope at all.
        """
        if source_hint is not None and source_hint not in self._items:
            raise ValueError(
                f"source_hint must be one of {sorted(self._items)} or None, not {source_hint!r}."
            )
        document = _decode(body, self.max_depth)
        wrapped = document.get("items") if type(document) is dict else None
        candidates: list[object]
        if type(wrapped) is dict:
            candidates, in_list = [wrapped], False  # the shape of the doc
        else:
            candidates, in_list = self._candidates(document)
        envelopes = []
        for position, candidate in enumerate(candidates):
            data, messages = self._envelope.load(candidate)
            if data is None:
                assert messages is not None
                if in_list:
                    messages = {"items": {position: messages}}
                raise InvalidEnvelopeError(
                    _first_sentence(messages, "The envelope is not valid"), messages=messages
                )
            source = self.envelope_schema.source_of(data)
            kind = source_hint
            if isinstance(source, str):
                # A source that contradicts the endpoint wins: the body says what it is.
                if name := source.strip().casefold():
                    kind = wire.SOURCES.get(name, "unknown")
            else:
                source = ""
            client_key = data["client_key"]
            if not isinstance(client_key, str):
                client_key = None
            envelopes.append(Envelope(kind, source, client_key, data["data"] or []))
        return envelopes

    def load(self, envelopes: t.Sequence[Envelope]) -> Batch:
        """Validate every item of every envelope: events in body order, and the rejected items."""
        events, rejected = self.load_items(envelopes)
        return batch_of(envelopes, events, rejected)

    def load_items(
        self, envelopes: t.Sequence[Envelope]
    ) -> tuple[tuple[Event, ...], tuple[Rejection, ...]]:
        """:meth:`load` without the :class:`~yalgaar_receiver.Batch` around its result."""
        events: list[Event] = []
        rejected: list[Rejection] = []
        for position, (kind, source, client_key, items) in enumerate(envelopes):
            key = client_key or ""
            for index, item in enumerate(items):
                item_kind = kind or _infer_kind(item)
                found = self._items.get(item_kind)
                if found is None:
                    event: Event | None = _unknown_event(item, source, key)
                    messages = None if event is not None else {"_schema": [_NOT_AN_OBJECT]}
                else:
                    loader, make_event = found
                    data, messages = loader.load(item)
                    event = None if data is None else make_event(data, raw=item, client_key=key)
                    if self.message_keys is not None and isinstance(event, MessageEvent):
                        event, messages = self._decrypted(event)
                if event is not None:
                    events.append(event)
                else:
                    assert messages is not None
                    rejected.append(
                        Rejection(
                            envelope=position,
                            index=index,
                            errors=messages,
                            raw=item,
                            kind=item_kind,
                        )
                    )
        return tuple(events), tuple(rejected)

    def _decrypted(
        self, event: MessageEvent
    ) -> tuple[MessageEvent | None, dict[str, t.Any] | None]:
        """``event`` with its message decrypted; when no key decrypts it, ``event`` as it came
        or the item's messages, as ``undecryptable`` says."""
        assert self.message_keys is not None
        try:
            text = self.message_keys.decrypt(event.message)
        except ValueError as error:
            if self.undecryptable == "deliver":
                return event, None
            return None, {"message": [str(error)]}
        return dataclasses.replace(event, message=text, encrypted=True), None

    def _candidates(self, document: object) -> tuple[list[object], bool]:
        """The objects that should be envelopes, and whether they came from a list."""
        if isinstance(document, list):
            return document, True
        if not isinstance(document, dict):
            raise InvalidEnvelopeError(
                f"The body is {wire.describe(document)}, not a Yalgaar envelope; "
                'expected {"items": {"source": ..., "clientKey": ..., "data": [...]}}.'
            )
        if "items" in document:
            items = document["items"]
            if isinstance(items, str):
                items = _loads(items, self.max_depth, "The 'items' text")
            if isinstance(items, dict):
                return [items], False
            if isinstance(items, list):
                return items, True
            raise InvalidEnvelopeError(
                f"'items' is {wire.describe(items)}; expected an envelope object or a list of "
                "them.",
                messages={"items": [f"Expected an object or a list, got {wire.describe(items)}."]},
            )
        if self.envelope_schema.wire_keys & document.keys():
            return [document], False
        keys = ", ".join(repr(k) for k in sorted(self.envelope_schema.wire_keys))
        raise InvalidEnvelopeError(
            f"The body is a JSON object without 'items' or any of {keys}; "
            "it is not a Yalgaar envelope."
        )


def batch_of(
    envelopes: t.Sequence[Envelope],
    events: tuple[Event, ...],
    rejected: tuple[Rejection, ...],
) -> Batch:
    """The :class:`~yalgaar_receiver.Batch` of what was loaded from ``envelopes``."""
    return Batch(
        events=events,
        rejected=rejected,
        client_keys=tuple(envelope.client_key for envelope in envelopes),
        sources=tuple(envelope.kind or "" for envelope in envelopes),
        sizes=tuple(len(envelope.items) for envelope in envelopes),
    )


def _schema(given: object, stock: type[ItemSchema], setting: str) -> ItemSchema:
    if given is None:
        return stock()
    if not isinstance(given, stock):
        raise ConfigurationError(
            f"{setting} must be an instance of {stock.__name__} or of a subclass of it, "
            f"not {given!r}."
        )
    return given


def parse_envelope(
    body: bytes | str | object,
    *,
    source_hint: str | None = None,
    max_depth: int = 64,
    presence_schema: PresenceItemSchema | None = None,
    message_schema: MessageItemSchema | None = None,
) -> Batch:
    """Parse one webhook body into typed events, without authenticating or dispatching.

    :param body: the raw body (``bytes`` or ``str``) or JSON that is already decoded.
    :param source_hint: ``"presence"`` or ``"message"`` when the body came to the endpoint of
        that source; used for envelopes whose ``source`` is missing.
    :param max_depth: refuse JSON nested deeper than this (every array and object counts one
        level, the outermost is level 1).
    :param presence_schema: see :class:`Parser`; the stock schema by default.
    :param message_schema: see :class:`Parser`.
    :raises InvalidEnvelopeError: the body is not JSON, too deep, or no envelope at all.
    """
    if presence_schema is None and message_schema is None:
        parser = _stock_parser(max_depth)
    else:
        parser = Parser(
            presence_schema=presence_schema, message_schema=message_schema, max_depth=max_depth
        )
    return parser.parse(body, source_hint=source_hint)


@functools.lru_cache(maxsize=8)
def _stock_parser(max_depth: int) -> Parser:
    # The stock schemas' loaders are derived once, not for every body.
    return Parser(max_depth=max_depth)


# -- decoding -----------------------------------------------------------------------------------


def _decode(body: object, max_depth: int) -> object:
    if isinstance(body, (bytes, bytearray, memoryview)):
        data = bytes(body)
        if data.startswith(_BOM):
            data = data[len(_BOM) :]
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as error:
            raise InvalidEnvelopeError(
                f"The body is not UTF-8 text (byte {error.start} is invalid); "
                "Yalgaar sends JSON in UTF-8."
            ) from None
    elif isinstance(body, str):
        text = body[1:] if body.startswith("\ufeff") else body
    else:
        _check_depth(body, max_depth)
        return body
    return _loads(text, max_depth, "The body")


def _loads(text: str, max_depth: int, what: str) -> object:
    if not text.strip():
        raise InvalidEnvelopeError(f"{what} is empty; Yalgaar posts a JSON envelope.")
    try:
        value = _DECODER.decode(text)
    except RecursionError:
        # Python's decoder has a nesting limit of its own (about a thousand levels on 3.11).
        raise InvalidEnvelopeError(
            f"{what} is nested deeper than Python's JSON decoder reads"
            f"{'' if max_depth >= 1000 else f' (and than max_depth={max_depth})'}."
        ) from None
    except _DuplicateKeyError as error:
        raise InvalidEnvelopeError(
            f"{what} has the key {wire.preview(error.key)} twice in one object; JSON names "
            "must be unique, and a second value could hide the first from a check."
        ) from None
    except ValueError as error:
        # Covers JSONDecodeError and integers beyond Python's digit limit.
        raise InvalidEnvelopeError(f"{what} is not valid JSON: {error}.") from None
    # Every array and object opens with a bracket, so a text with no more brackets than
    # max_depth (strings included) cannot nest deeper: a one-item webhook needs no walk.
    if text.count("{") + text.count("[") > max_depth:
        _check_depth(value, max_depth)
    return value


class _DuplicateKeyError(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list[tuple[str, t.Any]]) -> dict[str, t.Any]:
    """Build a JSON object, refusing a key that appears twice."""
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKeyError(key)
            seen.add(key)
    return result


# Built once: json.loads with a hook builds a decoder and its scanner on every call.
_DECODER: t.Final = json.JSONDecoder(object_pairs_hook=_unique_keys)


def _check_depth(value: object, max_depth: int) -> None:
    try:
        _within(value, max_depth)
    except _TooDeepError:
        raise InvalidEnvelopeError(
            f"The body is nested deeper than {max_depth} levels; raise max_depth if that is "
            "expected."
        ) from None
    except RecursionError:
        # Only with a max_depth beyond the interpreter's recursion limit.
        raise InvalidEnvelopeError(
            "The body is nested deeper than this Python can check; it is refused."
        ) from None


def _within(node: object, levels: int) -> None:
    """Raise :class:`_TooDeepError` when ``node`` holds more than ``levels`` levels of arrays
    and objects (``node`` itself counting one). Recurses into containers only, and no deeper
    than ``levels``."""
    if type(node) is dict:
        children: t.Iterable[object] = node.values()
    elif type(node) is list:
        children = node
    else:
        return  # a scalar, or a container type json.loads never makes
    if levels < 1:
        raise _TooDeepError
    for child in children:
        if type(child) is dict or type(child) is list:
            _within(child, levels - 1)


class _TooDeepError(Exception):
    """Raised by :func:`_within`, which does not know the limit to put in the message."""


# -- items --------------------------------------------------------------------------------------

_NOT_AN_OBJECT: t.Final = ItemSchema.error_messages["type"]


def _infer_kind(item: object) -> str:
    """The kind of an item whose envelope does not say: ``action`` means presence, else
    ``message`` means message."""
    if isinstance(item, dict):
        if "action" in item:
            return "presence"
        if "message" in item:
            return "message"
    return "unknown"


def _unknown_event(item: object, source: str, client_key: str) -> UnknownEvent | None:
    """An item of an unknown source: its fields are read where they are present and valid.

    ``None`` when the item is not an object, which is all such an item can get wrong.
    """
    if not isinstance(item, dict):
        return None
    return UnknownEvent(
        source=source,
        channel=_lenient(wire.read_channel, item.get("channel")),
        uuid=_lenient(wire.read_uuid, item.get("uuid")),
        timestamp=_lenient(wire.read_timestamp, item.get("timestamp")),
        client_key=client_key,
        raw=item,
        extra={k: v for k, v in item.items() if k not in ("channel", "uuid", "timestamp")},
    )


_T = t.TypeVar("_T")


def _lenient(reader: t.Callable[[object], _T], value: object) -> _T | None:
    if value is None:
        return None
    try:
        return reader(value)
    except ValueError:
        return None


def _first_sentence(messages: t.Mapping[t.Any, t.Any], fallback: str) -> str:
    """Flatten the first message of a nested marshmallow dict into one sentence."""
    path: list[str] = []
    node: t.Any = messages
    while isinstance(node, dict) and node:
        key, node = next(iter(node.items()))
        if key != "_schema":
            path.append(str(key))
    text = node[0] if isinstance(node, list) and node else fallback
    where = ".".join(path)
    return f"{where}: {text}" if where else str(text)
