"""``parse_envelope()``: one webhook body in, typed events out; no I/O, no auth, no dispatch.

Reading happens in two steps so that the receiver can refuse a request cheaply before it pays for
validating every item: :func:`read_envelopes` decodes the JSON and finds the envelopes (the body
is refused as a whole here), then :func:`load_envelopes` validates the items (a bad item is only
rejected). :func:`parse_envelope` runs both.

Accepted shapes, liberal because the sender's own doc disagrees with itself:

* ``{"items": {...}}`` (the doc), ``{"items": [{...}, ...]}``, ``items`` as JSON text holding
  either, a bare ``{"source", "clientKey", "data"}``, and a top-level list of bare envelopes;
* any Content-Type; UTF-8 with or without a byte-order mark.
"""

from __future__ import annotations

import functools
import json
import operator
import typing as t
from itertools import chain

from . import wire
from .events import Batch, Event, Rejection
from .exceptions import InvalidEnvelopeError
from .fastpath import record_builder
from .schemas import load_envelope, load_items_into

__all__ = ["Envelope", "load_envelopes", "parse_envelope", "read_envelopes"]

#: ``Batch(events=..., rejected=..., client_keys=...)`` for less than half the cost, built by its
#: slots (see :func:`~yalgaar_receiver.fastpath.record_builder`): every request builds one.
_new_batch: t.Final = record_builder(Batch, ("events", "rejected", "client_keys"))
_BOM: t.Final = b"\xef\xbb\xbf"
_SOURCE_HINTS: t.Final = frozenset({"presence", "message"})
# Exact types, as json.loads makes them; a subclass in decoded input is taken as a leaf.
_CONTAINERS: t.Final[frozenset[type]] = frozenset({dict, list})
# Text up to this length is checked for depth by recursion rather than by levels (see _loads).
# It cannot nest deeper than half its length, so the recursion stays well inside Python's limit.
_SMALL_TEXT: t.Final = 1024


class Envelope(t.NamedTuple):
    """One envelope found in a body, before its items are validated.

    A named tuple rather than a frozen dataclass, as immutable and a third of the cost to build:
    every request builds one.

    :param kind: ``"presence"``, ``"message"`` or ``"unknown"``; ``None`` when neither the
        envelope nor the endpoint says, and each item decides.
    :param source: the ``source`` text as received (``""`` when absent or not a string).
    :param client_key: the ``clientKey`` when it is a string, else ``None``.
    :param items: the ``data`` items, not yet validated.
    """

    kind: str | None
    source: str
    client_key: str | None
    items: list[t.Any]


# Envelope(...) without the Python-level __new__ a named tuple has; and its key, in C.
_new_envelope: t.Final = functools.partial(tuple.__new__, Envelope)
_client_key: t.Final = operator.attrgetter("client_key")


def parse_envelope(
    body: bytes | str | object,
    *,
    source_hint: str | None = None,
    max_depth: int = 64,
) -> Batch:
    """Parse one webhook body into typed events, without authenticating or dispatching.

    :param body: the raw body (``bytes`` or ``str``) or JSON that is already decoded.
    :param source_hint: ``"presence"`` or ``"message"`` when the body came to the endpoint of
        that source; used for envelopes whose ``source`` is missing.
    :param max_depth: refuse JSON nested deeper than this (every array and object counts one
        level, the outermost is level 1).
    :raises InvalidEnvelopeError: the body is not JSON, too deep, or no envelope at all.
    """
    return load_envelopes(read_envelopes(body, source_hint=source_hint, max_depth=max_depth))


def read_envelopes(
    body: bytes | str | object,
    *,
    source_hint: str | None = None,
    max_depth: int = 64,
) -> list[Envelope]:
    """Decode a body and find its envelopes; the items are not validated yet.

    :raises InvalidEnvelopeError: as :func:`parse_envelope`.
    """
    if source_hint is not None and source_hint not in _SOURCE_HINTS:
        raise ValueError(f"source_hint must be 'presence', 'message' or None, not {source_hint!r}.")
    document = _decode(body, max_depth)
    # The shape the doc shows, {"items": {...}}, without a call; _candidates has every other one.
    wrapped = document.get("items") if type(document) is dict else None
    if type(wrapped) is dict:
        candidates: list[object] = [wrapped]
        in_list = False
    else:
        candidates, in_list = _candidates(document, max_depth)
    envelopes = []
    for position, candidate in enumerate(candidates):
        try:
            source, client_key, items = load_envelope(candidate)
        except ValueError as error:
            messages: dict[str, t.Any] = getattr(error, "messages", {"_schema": [str(error)]})
            if in_list:
                messages = {"items": {position: messages}}
            raise InvalidEnvelopeError(
                _first_sentence(messages, "The envelope is not valid"), messages=messages
            ) from None
        kind = source_hint
        if isinstance(source, str):
            # A source that contradicts the endpoint wins: the body says what it is.
            if name := source.strip().casefold():
                kind = wire.SOURCES.get(name, "unknown")
        else:
            source = ""
        if not isinstance(client_key, str):
            client_key = None
        envelopes.append(_new_envelope((kind, source, client_key, items)))
    return envelopes


def load_envelopes(envelopes: t.Sequence[Envelope]) -> Batch:
    """Validate every item of every envelope: events in body order, and the rejected items."""
    events: list[Event] = []
    rejected: list[Rejection] = []
    for position, (kind, source, client_key, items) in enumerate(envelopes):
        load_items_into(events, rejected, kind, items, client_key or "", source, position)
    return _new_batch(tuple(events), tuple(rejected), tuple(map(_client_key, envelopes)))


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
    # A key twice in one object is refused (json keeps the last value silently). The exact check
    # is a Python hook per object, which costs about as much as decoding a presence item; so a
    # body is decoded in C, and the members its depth walk finds are compared with the colons of
    # the text: every member has one, so as many members as colons means no key came twice.
    # Colons inside strings (the JSON text of a message, a URL) defeat the count and get the
    # hook, at once when a backslash announces escapes (JSON text inside strings, for one).
    exact = "\\" in text
    try:
        value = (_EXACT if exact else _PLAIN).decode(text)
    except RecursionError:
        raise _too_deep(max_depth) from None
    except _DuplicateKeyError as error:
        raise _duplicate(what, error.key) from None
    except ValueError as error:
        # Covers JSONDecodeError and integers beyond Python's digit limit.
        raise InvalidEnvelopeError(f"{what} is not valid JSON: {error}.") from None
    if len(text) <= _SMALL_TEXT:
        # A small body (a one-item webhook) is walked by a plain recursion that stops at the
        # limit: its few containers cost less that way than counting brackets for the walk by
        # levels, and counting them costs as much as the walk (str.count reads every character).
        try:
            members = _members(value, max_depth)
        except _TooDeepError:
            raise _too_deep(max_depth) from None
    else:
        # Every array and object opens with a bracket, so the count of brackets (strings
        # included) bounds the containers, and the walk by levels stops once it has seen them.
        members = _check_depth(value, max_depth, text.count("{") + text.count("["))
    if not exact and members != text.count(":"):
        try:
            _EXACT.decode(text)
        except _DuplicateKeyError as error:
            raise _duplicate(what, error.key) from None
    return value


def _members(node: object, levels: int) -> int:
    """How many members the objects in ``node`` have, all levels down.

    :param levels: how many levels of arrays and objects ``node`` may still hold;
        :class:`_TooDeepError` when it holds more.
    """
    # Recursing into containers only: a call per scalar would double the cost of a small body.
    if type(node) is dict:
        count = len(node)
        values: t.Iterable[t.Any] = node.values()
    elif type(node) is list:
        count = 0
        values = node
    else:
        return 0
    if levels < 1:
        raise _TooDeepError
    for value in values:
        if type(value) in _CONTAINERS:
            count += _members(value, levels - 1)
    return count


class _TooDeepError(Exception):
    """Raised by :func:`_members`, which does not know the limit to put in the message."""


def _duplicate(what: str, key: str) -> InvalidEnvelopeError:
    return InvalidEnvelopeError(
        f"{what} has the key {wire.preview(key)} twice in one object; JSON names "
        "must be unique, and a second value could hide the first from a check."
    )


class _DuplicateKeyError(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list[tuple[str, t.Any]]) -> dict[str, t.Any]:
    """Build a JSON object, refusing a key that appears twice (``json`` keeps the last)."""
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKeyError(key)
            seen.add(key)
    return result


# Built once: json.loads with a hook builds a decoder and its scanner on every call, and without
# one goes through two more Python frames to reach the same default decoder.
_PLAIN: t.Final = json.JSONDecoder()
_EXACT: t.Final = json.JSONDecoder(object_pairs_hook=_unique_keys)


def _check_depth(value: object, max_depth: int, brackets: int | None = None) -> int:
    """Raise when ``value`` nests deeper than ``max_depth``; return how many members its objects
    have (the walk sees every object, so the count is exact).

    :param brackets: how many ``{`` and ``[`` the JSON text had, strings included, when
        ``value`` was decoded from text. Every array and object opens with one, so this bounds
        the number of containers: once the levels walked hold that many containers, nothing
        deeper is left to walk. A presence batch stops at its items that way, without looking
        into them.
    """
    # Level by level rather than node by node: a deep document cannot exhaust the Python stack,
    # and each level is taken apart in C (``map``, ``chain``, ``set``) instead of one node at a
    # time in Python, which matters because every item of every request passes here.
    level: list[t.Any] = [value]
    kinds = {type(value)}
    depth = 1
    seen = 0
    members = 0
    while not kinds.isdisjoint(_CONTAINERS):
        if depth > max_depth:
            raise _too_deep(max_depth)
        if not kinds <= _CONTAINERS:
            level = [node for node in level if type(node) in _CONTAINERS]
        seen += len(level)
        if kinds == {dict}:  # a list of items, for one
            members += sum(map(len, level))
            if brackets is not None and seen >= brackets:
                return members
            children = list(chain.from_iterable(map(dict.values, level)))
        elif kinds == {list}:
            if brackets is not None and seen >= brackets:
                return members
            children = list(chain.from_iterable(level))
        else:
            children = []
            for node in level:
                if type(node) is dict:
                    members += len(node)
                    children.extend(node.values())
                else:
                    children.extend(node)
            if brackets is not None and seen >= brackets:
                return members
        level = children
        kinds = set(map(type, level))
        depth += 1
    return members


def _too_deep(max_depth: int) -> InvalidEnvelopeError:
    return InvalidEnvelopeError(
        f"The body is nested deeper than {max_depth} levels; raise max_depth if that is expected."
    )


def _candidates(document: object, max_depth: int) -> tuple[list[object], bool]:
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
            items = _loads(items, max_depth, "The 'items' text")
        if isinstance(items, dict):
            return [items], False
        if isinstance(items, list):
            return items, True
        raise InvalidEnvelopeError(
            f"'items' is {wire.describe(items)}; expected an envelope object or a list of them.",
            messages={"items": [f"Expected an object or a list, got {wire.describe(items)}."]},
        )
    if wire.ENVELOPE_KEYS & document.keys():
        return [document], False
    raise InvalidEnvelopeError(
        "The body is a JSON object without 'items', 'source', 'clientKey' or 'data'; "
        "it is not a Yalgaar envelope."
    )


def _first_sentence(messages: t.Mapping[str, t.Any], fallback: str) -> str:
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
