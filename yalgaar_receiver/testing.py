"""The test kit: build what Yalgaar sends, and capture what a receiver makes of it.

Builders produce the bodies Yalgaar posts, byte for byte in spirit: an ``items`` *object*,
``source`` spelled ``"Presence"`` or ``"Message"``, ``clientKey`` beside it, and each timestamp
as a *string* of whole seconds::

    from yalgaar_receiver.testing import bind, message, message_envelope, presence_envelope

    body = presence_envelope(bind("lobby", "alice", at=1521609600), client_key="ck-1")
    body.to_bytes()   # b'{"items":{"source":"Presence","clientKey":"ck-1","data":[...]}}'

:func:`capture_events` records, in order, every event a receiver emits, every item and request
it refuses, and every handler that raised, with blinker's own ``connected_to``; nothing is patched.

Imports: the standard library, blinker and the core; no Flask, no pytest. The pytest plugin
(:mod:`yalgaar_receiver.pytest_plugin`) builds its fixtures on it.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import typing as t
from dataclasses import dataclass
from datetime import datetime, timezone

from blinker import ANY

from . import signals
from .encryption import MessageKeys
from .events import Batch, Event, HandlerFailure, Rejection
from .exceptions import YalgaarError
from .receiver import Receiver

__all__ = [
    "Capture",
    "Payload",
    "Record",
    "bind",
    "capture_events",
    "message",
    "message_envelope",
    "presence_envelope",
    "unbind",
]

#: What ``at=`` accepts: an aware datetime (a naive one is read as UTC), or seconds since the epoch.
When: t.TypeAlias = "datetime | int | float | None"

_E = t.TypeVar("_E", bound=Event)


class Payload(dict[str, t.Any]):
    """A webhook body as a JSON-ready dict, which can also give its bytes.

    It is a plain ``dict`` in every other way: change it to build a malformed body on purpose
    (``del body["items"]["clientKey"]``).
    """

    def to_bytes(self) -> bytes:
        """The body as Yalgaar puts it on the wire: compact JSON in UTF-8."""
        return json.dumps(self, separators=(",", ":"), ensure_ascii=False).encode("utf-8")

    def to_text(self) -> str:
        """The body as JSON text (one line, so it fits a JSON-lines file)."""
        return self.to_bytes().decode("utf-8")


def _seconds(at: When) -> str:
    """Yalgaar's timestamp: whole seconds since the epoch, as a string."""
    seconds: float
    if at is None:
        seconds = time.time()
    elif isinstance(at, datetime):
        moment = at if at.tzinfo is not None else at.replace(tzinfo=timezone.utc)
        seconds = moment.timestamp()
    elif isinstance(at, bool) or not isinstance(at, (int, float)):
        raise TypeError(f"at must be a datetime or a number of seconds, not {at!r}.")
    else:
        seconds = at
    # Before 1970 the receiver rejects the item; a test that wants that writes the item itself.
    if seconds < 0:
        raise ValueError(f"at must not be before 1970, got {at!r}.")
    return str(int(seconds))


def _presence_item(channel: str, uuid: str, action: str, at: When) -> dict[str, t.Any]:
    return {"channel": channel, "uuid": uuid, "timestamp": _seconds(at), "action": action}


def bind(channel: str, uuid: str, *, at: When = None) -> dict[str, t.Any]:
    """A presence item: ``uuid`` subscribed to ``channel``.

    :param at: when; the current time by default. Yalgaar documents whole seconds, so a fraction
        is dropped (the event's ``timestamp`` is the whole second).
    :raises ValueError: ``at`` is before 1970.
    """
    return _presence_item(channel, uuid, "bind", at)


def unbind(channel: str, uuid: str, *, at: When = None) -> dict[str, t.Any]:
    """A presence item: ``uuid`` unsubscribed from ``channel``. ``at`` as in :func:`bind`."""
    return _presence_item(channel, uuid, "unbind", at)


def message(
    channel: str,
    uuid: str,
    text_or_obj: object,
    *,
    at: When = None,
    encrypt_key: str | None = None,
) -> dict[str, t.Any]:
    """A message item: ``uuid`` published on ``channel``.

    :param text_or_obj: the published text; any other JSON value is encoded as compact JSON text
        first, as Yalgaar's SDKs publish strings (so ``event.json()`` gives the value back, and
        a ``payload=`` schema loads it).
    :param at: as in :func:`bind`.
    :param encrypt_key: encrypt the text with this key, as a publisher whose SDK was given it
        does (see :mod:`~yalgaar_receiver.encryption`; needs the ``crypto`` extra).
    """
    if isinstance(text_or_obj, str):
        text = text_or_obj
    else:
        text = json.dumps(text_or_obj, separators=(",", ":"), ensure_ascii=False)
    if encrypt_key is not None:
        text = MessageKeys([encrypt_key]).encrypt(text)
    return {"channel": channel, "uuid": uuid, "timestamp": _seconds(at), "message": text}


def _envelope(source: str, items: t.Sequence[t.Mapping[str, t.Any]], client_key: str) -> Payload:
    if not isinstance(client_key, str):
        raise TypeError(f"client_key must be a string, not {client_key!r}.")
    return Payload(
        items={"source": source, "clientKey": client_key, "data": [dict(i) for i in items]}
    )


def presence_envelope(*items: t.Mapping[str, t.Any], client_key: str) -> Payload:
    """The body of a *Presence* webhook holding ``items`` (from :func:`bind`, :func:`unbind`,
    or dicts of your own, malformed ones included).

    Yalgaar itself sends at most 200 items a request; more are allowed here, to test limits.
    """
    return _envelope("Presence", items, client_key)


def message_envelope(*items: t.Mapping[str, t.Any], client_key: str) -> Payload:
    """The body of a *Message* webhook holding ``items`` (from :func:`message` or your own)."""
    return _envelope("Message", items, client_key)


# -- capture ---------------------------------------------------------------------------------

#: The kinds of :class:`Record`, in the words of the signal each comes from.
Kind = t.Literal["envelope", "event", "rejection", "refusal", "failure", "duplicate", "dead_letter"]


@dataclass(frozen=True, slots=True)
class Record:
    """One thing a receiver did, as :func:`capture_events` saw it.

    :param kind: ``"envelope"`` (a body passed every check: ``value`` is the
        :class:`~yalgaar_receiver.Batch`), ``"event"`` (an event went through the handlers:
        an :class:`~yalgaar_receiver.Event`), ``"rejection"`` (a malformed item: a
        :class:`~yalgaar_receiver.Rejection`), ``"refusal"`` (a whole request refused: the
        :class:`~yalgaar_receiver.YalgaarError`), ``"failure"`` (a handler raised: a
        :class:`~yalgaar_receiver.HandlerFailure`), ``"duplicate"`` (an event not run
        because a delivery of it was already handled: the :class:`~yalgaar_receiver.Event`),
        or ``"dead_letter"`` (an event given up after ``max_attempts``: the event).
    :param sender: the receiver that sent it.
    """

    kind: Kind
    value: Batch | Event | Rejection | YalgaarError | HandlerFailure
    sender: object


class Capture:
    """What a receiver did while :func:`capture_events` was open, in the order it happened.

    Iterating a capture, taking its ``len()`` or indexing it reads :attr:`events`, the events
    that went through the handlers (``list(capture) == capture.events``); the other properties
    give the rest. An event is recorded once its handlers have run (it comes from the
    ``presence``, ``message`` and ``unknown_event`` signals, which are sent after the decorated
    handlers), so the failure of a decorated handler is recorded just *before* the event it
    failed on. Recording is thread-safe: a dispatcher that runs handlers on other threads is
    captured too, and :meth:`wait_for` waits for it.
    """

    def __init__(self) -> None:
        self._records: list[Record] = []
        self._changed = threading.Condition()

    def _add(self, kind: Kind, value: t.Any, sender: object) -> None:
        with self._changed:
            self._records.append(Record(kind, value, sender))
            self._changed.notify_all()

    def _values(self, kind: Kind) -> list[t.Any]:
        with self._changed:
            return [r.value for r in self._records if r.kind == kind]

    @property
    def records(self) -> list[Record]:
        """Everything, in order."""
        with self._changed:
            return list(self._records)

    @property
    def events(self) -> list[Event]:
        """The events that went through the handlers, in order."""
        return self._values("event")

    def __iter__(self) -> t.Iterator[Event]:
        return iter(self.events)

    def __len__(self) -> int:
        return len(self.events)

    @t.overload
    def __getitem__(self, index: int) -> Event: ...

    @t.overload
    def __getitem__(self, index: slice) -> list[Event]: ...

    def __getitem__(self, index: int | slice) -> Event | list[Event]:
        return self.events[index]

    def of_type(self, event_class: type[_E]) -> list[_E]:
        """The events that are instances of ``event_class`` (``capture.of_type(BindEvent)``)."""
        return [e for e in self.events if isinstance(e, event_class)]

    @property
    def envelopes(self) -> list[Batch]:
        """One :class:`~yalgaar_receiver.Batch` per body that passed every check."""
        return self._values("envelope")

    @property
    def rejections(self) -> list[Rejection]:
        """What the answers reported as ``rejected``: the malformed items (not dispatched), and
        the messages a handler's payload schema refused (``Rejection.handlers`` names who did
        not get them)."""
        return self._values("rejection")

    @property
    def refusals(self) -> list[YalgaarError]:
        """The errors of the requests refused as a whole (answered 400, 403 or 413)."""
        return self._values("refusal")

    @property
    def failures(self) -> list[HandlerFailure]:
        """The handler and subscriber calls that raised."""
        return self._values("failure")

    @property
    def duplicates(self) -> list[Event]:
        """The events skipped by the receiver's de-duplication store."""
        return self._values("duplicate")

    @property
    def dead_letters(self) -> list[Event]:
        """The events given up after ``max_attempts`` failed attempts."""
        return self._values("dead_letter")

    def clear(self) -> None:
        """Forget everything recorded so far."""
        with self._changed:
            self._records.clear()

    def wait_for(self, count: int, *, timeout: float = 5.0) -> list[Event]:
        """Wait until at least ``count`` events were recorded; return the events.

        For dispatchers that run handlers after the request was answered.

        :raises TimeoutError: fewer than ``count`` events arrived within ``timeout`` seconds.
        """

        def enough() -> bool:
            return sum(r.kind == "event" for r in self._records) >= count

        with self._changed:
            if not self._changed.wait_for(enough, timeout=timeout):
                got = sum(r.kind == "event" for r in self._records)
                raise TimeoutError(f"Waited {timeout} s for {count} event(s); {got} arrived.")
        return self.events

    def __repr__(self) -> str:
        counts: dict[str, int] = {}
        for record in self.records:
            counts[record.kind] = counts.get(record.kind, 0) + 1
        inside = " ".join(f"{kind}s={n}" for kind, n in counts.items())
        return f"<Capture {inside}>" if inside else "<Capture empty>"


@contextlib.contextmanager
def capture_events(receiver: Receiver | None = None) -> t.Iterator[Capture]:
    """Record what ``receiver`` does while the block runs; every receiver when it is ``None``.

    Built on blinker's ``Signal.connected_to``, so the recorders are disconnected when the
    block ends, even when it raises, and nothing else is changed::

        with capture_events(receiver) as capture:
            client.post("/yalgaar/presence", data=body.to_bytes())
        assert [e.uuid for e in capture.of_type(BindEvent)] == ["alice"]
    """
    capture = Capture()
    sender: object = ANY if receiver is None else receiver

    def recorder(kind: Kind, key: str) -> t.Callable[..., None]:
        def record(sender: object, **kwargs: t.Any) -> None:
            capture._add(kind, kwargs[key], sender)

        return record

    def record_failure(sender: object, **kwargs: t.Any) -> None:
        failure = HandlerFailure(
            event=kwargs["event"], handler=kwargs["handler"], error=kwargs["error"]
        )
        capture._add("failure", failure, sender)

    # ``presence`` carries every presence event (bind and unbind too), so each event reaches
    # exactly one of the three event signals and is recorded once.
    connections: list[tuple[t.Any, Kind, str]] = [
        (signals.envelope_received, "envelope", "batch"),
        (signals.presence, "event", "event"),
        (signals.message, "event", "event"),
        (signals.unknown_event, "event", "event"),
        (signals.event_rejected, "rejection", "rejection"),
        (signals.payload_rejected, "rejection", "rejection"),
        (signals.envelope_rejected, "refusal", "error"),
        (signals.duplicate_event, "duplicate", "event"),
        (signals.event_dead_lettered, "dead_letter", "event"),
    ]
    with contextlib.ExitStack() as stack:
        for signal, kind, key in connections:
            stack.enter_context(signal.connected_to(recorder(kind, key), sender=sender))
        stack.enter_context(signals.handler_failed.connected_to(record_failure, sender=sender))
        yield capture
