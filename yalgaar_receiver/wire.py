"""What Yalgaar puts on the wire, and how each field is read: the sender's quirks as data.

Yalgaar's only spec is one tutorial page, and it disagrees with itself (``source`` in the JSON,
``sources`` in the table; timestamps typed as strings "in seconds"). The tables below say what is
accepted, one comment per quirk; the ``read_*`` functions turn one field's value into its typed
form or raise :class:`ValueError` with a sentence that names the bad value. The marshmallow fields
of :mod:`yalgaar_receiver.schemas` call them, so each rule is written here once.

Imports: the standard library and :mod:`yalgaar_receiver.events`.
"""

from __future__ import annotations

import json
import math
import re
import typing as t
from datetime import datetime, timedelta, timezone

from .events import PresenceAction

__all__ = [
    "ACTIONS",
    "SOURCES",
    "SURROGATES",
    "TIMESTAMP_UNITS",
    "UNSAFE",
    "UNSIGNED_NUMBER",
    "compact_json",
    "describe",
    "preview",
    "read_action",
    "read_channel",
    "read_message",
    "read_timestamp",
    "read_uuid",
]

#: ``source`` after trimming and case-folding, to the kind of item it announces. Any other name
#: makes :class:`~yalgaar_receiver.UnknownEvent` items: a new source is delivered, not refused.
SOURCES: t.Final[t.Mapping[str, str]] = {
    "presence": "presence",
    "message": "message",
}

#: ``action`` after trimming and case-folding. The doc says "bind or unbind" without the casing;
#: the iOS SDK's enum says ``Bind``/``Unbind``. The other words are what comparable services
#: (PubNub, Pusher, MQTT) call the same thing, accepted because a sender may change vocabulary.
ACTIONS: t.Final[t.Mapping[str, PresenceAction]] = {
    "bind": PresenceAction.BIND,
    "subscribe": PresenceAction.BIND,
    "join": PresenceAction.BIND,
    "unbind": PresenceAction.UNBIND,
    "unsubscribe": PresenceAction.UNBIND,
    "leave": PresenceAction.UNBIND,
    # PubNub's name for a client that vanished without unsubscribing.
    "timeout": PresenceAction.UNBIND,
}

#: Numeric timestamps are scaled by magnitude. The doc says seconds, but senders of this shape use
#: milliseconds (Ably) and PubNub uses 17-digit time tokens; a value at or above a bound is in the
#: next unit. 1e11 seconds is the year 5138, so no real seconds value is misread.
TIMESTAMP_UNITS: t.Final = (
    (1e11, "seconds"),
    (1e14, "milliseconds"),
    (1e17, "microseconds"),
)

_EPOCH: t.Final = datetime(1970, 1, 1, tzinfo=timezone.utc)
_SECONDS_BELOW: t.Final = TIMESTAMP_UNITS[0][0]
# One constructor per unit rather than ``timedelta(**{unit: number})``: a keyword dict per
# timestamp costs more than the rest of reading it.
_DELTAS: t.Final[t.Mapping[str, t.Callable[[float], timedelta]]] = {
    "seconds": lambda number: timedelta(seconds=number),
    "milliseconds": lambda number: timedelta(milliseconds=number),
    "microseconds": lambda number: timedelta(microseconds=number),
}
#: Surrogates, as a regular-expression class: they only appear alone (a JSON ``"\ud800"``
#: escape) because a valid pair decodes to one character, and a lone one is not Unicode text.
SURROGATES: t.Final = r"\ud800-\udfff"
#: Characters no channel or uuid may hold, as a regular-expression class: they forge log lines
#: or break encoders. C0 and C1 controls (NUL, CR, LF among them), the Unicode line and
#: paragraph separators, and surrogates. Written with escapes, which Python's ``re`` and the
#: regular expressions of JSON Schema read alike.
UNSAFE: t.Final = rf"\x00-\x1f\x7f-\x9f\u2028\u2029{SURROGATES}"
#: A number written as text, without its sign: digits with an optional fraction and exponent.
UNSIGNED_NUMBER: t.Final = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"

_UNSAFE: t.Final = re.compile(f"[{UNSAFE}]")
_SURROGATE: t.Final = re.compile(f"[{SURROGATES}]")
_NUMBER: t.Final = re.compile(rf"[+-]?{UNSIGNED_NUMBER}")


def _text(value: object, what: str) -> str:
    """Coerce a JSON scalar that names something (a channel, a uuid) to trimmed text."""
    if isinstance(value, str):
        text = value.strip()
        # isprintable() is False for every character _UNSAFE refuses, and fast in C: the regex
        # only runs on the rare name that has something unusual in it.
        unsafe = None if text.isprintable() else _UNSAFE.search(text)
        if unsafe is not None:
            raise ValueError(
                f"The {what} {preview(text)} holds the control character or lone surrogate "
                f"{unsafe.group()!r} at position {unsafe.start()}; names are printable text."
            )
        return text
    # bool is an int subclass, and ``True`` is never a channel name.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"The {what} {value!r} is not a finite number.")
        return repr(value)
    raise ValueError(f"Expected a string or a number for the {what}, got {describe(value)}.")


def read_channel(value: object) -> str:
    """Read ``channel``: a string or a number, trimmed, never empty."""
    text = _text(value, "channel")
    if not text:
        raise ValueError("The channel may not be empty.")
    return text


def read_uuid(value: object) -> str | None:
    """Read ``uuid``: a string or a number, trimmed; empty means none."""
    if value is None:
        return None
    return _text(value, "uuid") or None


def read_timestamp(value: object) -> datetime | None:
    """Read ``timestamp`` into an aware UTC datetime.

    Accepts seconds (a string or a number, fractional or not, with spaces), larger units scaled
    as :data:`TIMESTAMP_UNITS` says, and ISO-8601 text (naive means UTC). Empty, ``0`` and
    ``"0"`` mean none.
    """
    number: int | float
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        if text.isdigit() and text.isascii():
            # Whole seconds, as the doc says: the common case, read without the regex (and
            # fromtimestamp gives what _EPOCH + timedelta gives, exactly, for whole seconds).
            number = int(text)
            if 0 < number < _SECONDS_BELOW:
                return datetime.fromtimestamp(number, timezone.utc)
        elif _NUMBER.fullmatch(text):
            number = int(text) if text.lstrip("+-").isdigit() else float(text)
        else:
            return _read_iso(text, value)
    elif value is None:
        return None
    elif isinstance(value, bool):
        raise ValueError(f"Expected a timestamp, got the boolean {json.dumps(value)}.")
    elif isinstance(value, (int, float)):
        number = value
    else:
        raise ValueError(f"Expected a timestamp as a string or a number, got {describe(value)}.")
    return _from_number(number, value)


def _from_number(number: int | float, original: object) -> datetime | None:
    if number == 0:
        return None
    if isinstance(number, float) and not math.isfinite(number):
        raise ValueError(f"Timestamp {preview(original)} is not a finite number.")
    if number < 0:
        raise ValueError(f"Timestamp {preview(original)} is negative.")
    try:
        for bound, unit in TIMESTAMP_UNITS:
            if number < bound:
                return _EPOCH + _DELTAS[unit](number)
        return _EPOCH + timedelta(microseconds=number / 1000)  # nanoseconds
    except (OverflowError, ValueError):
        # Past year 9999 (OverflowError), or an int too large for a float (also OverflowError)
        # or for timedelta's own checks (ValueError).
        raise ValueError(f"Timestamp {preview(original)} is out of range.") from None


def _read_iso(text: str, original: object) -> datetime:
    # Python 3.10's fromisoformat does not read the "Z" suffix.
    iso = text[:-1] + "+00:00" if text[-1:] in ("Z", "z") else text
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        raise ValueError(
            f"Timestamp {preview(original)} is neither a number of seconds nor an ISO-8601 date."
        ) from None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    try:
        return moment.astimezone(timezone.utc)
    except OverflowError:
        # 0001-01-01T00:00+01:00 is a valid date whose UTC time is before year 1.
        raise ValueError(f"Timestamp {preview(original)} is out of range in UTC.") from None


def read_action(value: object) -> tuple[PresenceAction, str]:
    """Read ``action`` into a :class:`PresenceAction` and the text as received.

    Never fails: an action this package does not know is :attr:`PresenceAction.UNKNOWN`, and a
    value that is not a string is kept as its JSON text.
    """
    if isinstance(value, str):
        text = _replace_surrogates(value)
        return ACTIONS.get(text.strip().casefold(), PresenceAction.UNKNOWN), text
    try:
        # The JSON text of a structured action holds its strings and keys as they came, lone
        # surrogates included.
        return PresenceAction.UNKNOWN, _replace_surrogates(compact_json(value))
    except ValueError:  # a non-finite float, or an int too long to print
        return PresenceAction.UNKNOWN, type(value).__name__


def _replace_surrogates(text: str) -> str:
    # A lone surrogate breaks every UTF-8 encoder downstream; the action never fails, so it is
    # replaced (U+FFFD) rather than refused.
    return text if text.isascii() else _SURROGATE.sub("\ufffd", text)


def read_message(value: object) -> str:
    """Read ``message``: a string as it is, any other JSON value as its compact JSON text.

    Either way the text must be Unicode: a lone surrogate (a JSON ``"\\ud800"`` escape, in the
    string or in any string or key of a structured value) is refused, because the text could
    not be encoded to UTF-8 to be stored or sent on.
    """
    if isinstance(value, str):
        text = value
    else:
        try:
            text = compact_json(value)
        except ValueError:
            raise ValueError("The message holds a number that JSON cannot represent.") from None
    surrogate = None if text.isascii() else _SURROGATE.search(text)
    if surrogate is not None:
        raise ValueError(
            f"The message holds a lone surrogate {surrogate.group()!r} at position "
            f"{surrogate.start()}, which is not Unicode text; it cannot be stored or sent on."
        )
    return text


def compact_json(value: object) -> str:
    """JSON text without spaces and with non-ASCII characters kept as they are."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def describe(value: object) -> str:
    """Name a JSON value's type for an error message: "an object", "a string"."""
    names = {
        dict: "an object",
        list: "an array",
        str: "a string",
        int: "a number",
        float: "a number",
        bool: "a boolean",
        type(None): "null",
    }
    return names.get(type(value), f"a {type(value).__name__}")


def preview(value: object, limit: int = 60) -> str:
    """``repr(value)``, cut to about ``limit`` characters: safe to put in a message or a log line.

    ``repr`` escapes newlines and other control characters, so input cannot forge a log line, and
    the cut keeps a 10 MB value from being echoed into answers and logs.
    """
    if isinstance(value, str) and len(value) > limit:
        return repr(value[:limit]) + "..."
    text = repr(value)
    return text if len(text) <= limit + 2 else text[:limit] + "..."
