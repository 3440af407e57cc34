"""Dead letters: events whose handlers failed in the background, kept so they can run again.

A background dispatcher answers the sender before the handlers run, so a handler that raises
cannot make the sender try again. Instead each failure becomes a :class:`DeadLetter` in a
:class:`DeadLetterSink`: the event in its serialized form (``raw`` included), the handler's name,
the error and the time. :func:`~yalgaar_receiver.delivery.replay` runs the stored events through
a receiver again, once the cause is fixed, and reports what happened.

Two sinks ship: :class:`JsonLinesDeadLetterSink`, one JSON object per line in a local file (the
embedded default, safe for several threads and processes on one machine), and
:class:`RedisDeadLetterSink`, a Redis list shared by every machine (it takes a ``redis`` client
that the application built).

Each stored line is a JSON object, version 1::

    {"v": 1, "id": "<32 hex>", "time": "<ISO-8601, UTC>", "handler": "<module.qualname>",
     "error": "<ExceptionType: message>", "traceback": "<text>", "attempts": 1,
     "event": {<the event, see yalgaar_receiver.serialization>}}
"""

from __future__ import annotations

import abc
import contextlib
import json
import logging
import os
import threading
import traceback
import typing as t
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone

from .._redis import RedisClient
from ..events import Event, HandlerFailure
from ..routing import handler_name
from . import serialization

try:  # POSIX; elsewhere the file sink is safe between threads of one process only.
    import fcntl
except ImportError:  # pragma: no cover - not on the platforms CI runs
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "DEFAULT_PATH",
    "DeadLetter",
    "DeadLetterSink",
    "JsonLinesDeadLetterSink",
    "RedisDeadLetterSink",
    "store",
]

logger = logging.getLogger("yalgaar_receiver.dead_letters")

#: Where :class:`JsonLinesDeadLetterSink` writes when given no path: the working directory.
DEFAULT_PATH: t.Final = "yalgaar-dead-letters.jsonl"

#: The version of one stored entry; a sink skips (and keeps) entries of another version.
ENTRY_VERSION: t.Final = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class DeadLetter:
    """One failed handler call on one event.

    :param event: the event in its serialized form (:mod:`~yalgaar_receiver.serialization`).
    :param handler: the qualified name of the handler or subscriber that raised, or ``None``
        when the event could not be dispatched at all (a shutdown, a broken dispatcher).
    :param error: the exception's type and message, one line.
    :param traceback: the formatted traceback, for the person who reads the entry.
    :param attempts: how many times the event was run before it was given up.
    :param time: when it was given up, UTC.
    :param id: a unique id, used to remove the entry once it has been replayed.
    """

    event: t.Mapping[str, t.Any] = field(repr=False)
    handler: str | None
    error: str
    traceback: str = field(default="", repr=False)
    attempts: int = 1
    time: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    @classmethod
    def from_failure(cls, failure: HandlerFailure, *, attempts: int = 1) -> DeadLetter:
        """The dead letter of a failure that :meth:`Receiver.emit` reported."""
        return cls.from_error(
            failure.event, failure.error, handler=handler_name(failure.handler), attempts=attempts
        )

    @classmethod
    def from_error(
        cls,
        event: Event | t.Mapping[str, t.Any],
        error: BaseException | str,
        *,
        handler: str | None = None,
        attempts: int = 1,
    ) -> DeadLetter:
        """The dead letter of ``event`` (typed or serialized) that failed with ``error``."""
        form = serialization.event_to_dict(event) if isinstance(event, Event) else event
        if isinstance(error, BaseException):
            text = f"{type(error).__qualname__}: {error}"
            trace = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        else:
            text, trace = error, ""
        return cls(event=form, handler=handler, error=text, traceback=trace, attempts=attempts)

    @property
    def raw(self) -> t.Any:
        """The item as Yalgaar sent it."""
        return self.event.get("raw")

    def load_event(self) -> Event:
        """The typed event, rebuilt.

        :raises ValueError: the stored form cannot be read by this release.
        """
        return serialization.event_from_dict(self.event)

    def to_json(self) -> str:
        """One line of JSON, the stored form of this entry."""
        return json.dumps(
            {
                "v": ENTRY_VERSION,
                "id": self.id,
                "time": self.time.isoformat(),
                "handler": self.handler,
                "error": self.error,
                "traceback": self.traceback,
                "attempts": self.attempts,
                "event": self.event,
            },
            separators=(",", ":"),
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> DeadLetter:
        """Read one stored entry.

        :raises ValueError: not JSON, or not an entry this release reads.
        """
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("v") != ENTRY_VERSION:
            raise ValueError("Not a version 1 dead-letter entry.")
        try:
            return cls(
                event=data["event"],
                handler=data.get("handler"),
                error=str(data.get("error", "")),
                traceback=str(data.get("traceback", "")),
                attempts=int(data.get("attempts", 1)),
                time=datetime.fromisoformat(data["time"]),
                id=str(data["id"]),
            )
        except (KeyError, TypeError) as error:
            raise ValueError(f"A dead-letter entry lacks {error}.") from None


class DeadLetterSink(abc.ABC):
    """Where dead letters are kept until they are replayed.

    Implementations must be safe to call from several threads; :meth:`put` must not lose an entry
    it returned from without raising.
    """

    @abc.abstractmethod
    def put(self, letter: DeadLetter) -> None:
        """Store ``letter``; raise when it could not be stored."""

    @abc.abstractmethod
    def entries(self) -> list[DeadLetter]:
        """Every readable entry, oldest first; unreadable ones are logged and left in place."""

    @abc.abstractmethod
    def remove(self, ids: t.Collection[str]) -> int:
        """Remove the entries with these ids; return how many were removed."""

    def __len__(self) -> int:
        return len(self.entries())


class JsonLinesDeadLetterSink(DeadLetterSink):
    """Dead letters as JSON lines in one local file.

    Every write appends one line under an exclusive ``flock`` and is flushed (and, with
    ``fsync``, forced to disk) before :meth:`put` returns, so several worker processes on one
    machine can share the file. :meth:`remove` rewrites the file in place under the same lock.

    :param path: the file, created when missing; :data:`DEFAULT_PATH` by default.
    :param fsync: force each entry to disk, so it survives a power cut as well as a crash.
    """

    def __init__(self, path: str | os.PathLike[str] = DEFAULT_PATH, *, fsync: bool = True) -> None:
        self.path = os.fspath(path)
        self.fsync = fsync
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<JsonLinesDeadLetterSink {self.path!r}>"

    def put(self, letter: DeadLetter) -> None:
        line = (letter.to_json() + "\n").encode("utf-8")
        with self._locked("ab") as file:
            file.write(line)
            file.flush()
            if self.fsync:
                os.fsync(file.fileno())

    def entries(self) -> list[DeadLetter]:
        if not os.path.exists(self.path):
            return []
        with self._locked("rb") as file:
            lines = file.read().splitlines()
        return [letter for _, letter in _read_lines(lines, self.path) if letter is not None]

    def remove(self, ids: t.Collection[str]) -> int:
        wanted = set(ids)
        if not wanted or not os.path.exists(self.path):
            return 0
        with self._locked("r+b") as file:
            lines = file.read().splitlines()
            keep = [
                line
                for line, letter in _read_lines(lines, self.path)
                if letter is None or letter.id not in wanted
            ]
            removed = len(lines) - len(keep)
            if removed:
                file.seek(0)
                file.truncate()
                file.write(b"".join(line + b"\n" for line in keep))
                file.flush()
                if self.fsync:
                    os.fsync(file.fileno())
        return removed

    @contextlib.contextmanager
    def _locked(self, mode: str) -> t.Iterator[t.BinaryIO]:
        with self._lock, open(self.path, mode) as file:
            if fcntl is not None:
                fcntl.flock(file.fileno(), fcntl.LOCK_SH if mode == "rb" else fcntl.LOCK_EX)
            try:
                yield t.cast(t.BinaryIO, file)
            finally:
                if fcntl is not None:
                    fcntl.flock(file.fileno(), fcntl.LOCK_UN)


class RedisDeadLetterSink(DeadLetterSink):
    """Dead letters in one Redis list, shared by every process and machine that uses it.

    Entries are appended with ``RPUSH`` and removed one by one with ``LREM``, so replaying never
    races with workers adding new entries. Configure the Redis server to persist (AOF or RDB)
    if dead letters must survive its restart.

    :param client: a ``redis.Redis`` (or compatible) client; ``decode_responses`` may be either.
    :param key: the list's key.
    """

    def __init__(self, client: RedisClient, key: str = "yalgaar:dead-letters") -> None:
        self.client = client
        self.key = key

    def __repr__(self) -> str:
        return f"<RedisDeadLetterSink {self.key!r}>"

    def put(self, letter: DeadLetter) -> None:
        self.client.rpush(self.key, letter.to_json())

    def entries(self) -> list[DeadLetter]:
        lines = self.client.lrange(self.key, 0, -1)
        return [letter for _, letter in _read_lines(lines, self.key) if letter is not None]

    def remove(self, ids: t.Collection[str]) -> int:
        wanted = set(ids)
        removed = 0
        if not wanted:
            return 0
        for line, letter in _read_lines(self.client.lrange(self.key, 0, -1), self.key):
            if letter is not None and letter.id in wanted:
                text = line.decode("utf-8") if isinstance(line, bytes) else line
                removed += int(self.client.lrem(self.key, 1, text))
        return removed


_Line = t.TypeVar("_Line", bytes, str)


def store(sink: DeadLetterSink, letter: DeadLetter) -> Exception | None:
    """Put ``letter`` in ``sink``. When the sink fails, the entry is logged at CRITICAL instead
    (the sink is the last resort, so the log is what is left) and the sink's error returned."""
    try:
        sink.put(letter)
    except Exception as error:
        logger.critical(
            "Could not store a dead letter in %r; entry: %s", sink, letter.to_json(), exc_info=True
        )
        return error
    return None


def _read_lines(lines: t.Iterable[_Line], where: str) -> list[tuple[_Line, DeadLetter | None]]:
    """Each line with its entry, or ``None`` (and a warning) when the line cannot be read."""
    result: list[tuple[_Line, DeadLetter | None]] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            result.append((line, DeadLetter.from_json(line)))
        except ValueError as error:
            logger.warning("Dead letter %d in %s is unreadable and kept: %s", number, where, error)
            result.append((line, None))
    return result
