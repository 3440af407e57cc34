"""Helpers for the presence tests: a clock the test moves, a transition recorder, bodies."""

from __future__ import annotations

import json
import threading
import typing as t
from datetime import datetime, timezone

from yalgaar_receiver import BindEvent, Receiver, UnbindEvent
from yalgaar_receiver.presence import ChangeKind, PresenceTracker

KEY = "ck-0123456789abcdef"

#: (kind, channel, uuid) as a recorder keeps it; uuid is "" for channel transitions.
Seen = tuple[str, str, str]


class FakeClock:
    """Seconds since the epoch that only move when the test says so."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


class Recorder:
    """Registers one decorated handler per transition and keeps what they were called with."""

    def __init__(self, tracker: PresenceTracker) -> None:
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        tracker.on_member_joined(self._member("member_joined"))
        tracker.on_member_left(self._member("member_left"))
        tracker.on_channel_occupied(self._channel("channel_occupied"))
        tracker.on_channel_vacated(self._channel("channel_vacated"))

    def _member(self, kind: str) -> t.Callable[[str, str], None]:
        def handler(channel: str, uuid: str) -> None:
            with self._lock:
                self.seen.append((kind, channel, uuid))

        return handler

    def _channel(self, kind: str) -> t.Callable[[str], None]:
        def handler(channel: str) -> None:
            with self._lock:
                self.seen.append((kind, channel, ""))

        return handler

    def take(self) -> list[Seen]:
        """What was recorded since the last call."""
        with self._lock:
            seen, self.seen = self.seen, []
            return seen


def body(*items: tuple[str, str, str, str | int | None]) -> bytes:
    """A Presence webhook body with one item per ``(action, channel, uuid, timestamp)``."""
    data = []
    for action, channel, uuid, timestamp in items:
        item: dict[str, t.Any] = {"channel": channel, "uuid": uuid, "action": action}
        if timestamp is not None:
            item["timestamp"] = str(timestamp)
        data.append(item)
    envelope = {"items": {"source": "Presence", "clientKey": KEY, "data": data}}
    return json.dumps(envelope).encode()


def event(
    action: str, channel: str, uuid: str, timestamp: float | None = None
) -> BindEvent | UnbindEvent:
    """A typed event as the receiver would build it, for ``receiver.emit``."""
    stamp = None if timestamp is None else datetime.fromtimestamp(timestamp, tz=timezone.utc)
    cls = BindEvent if action == "bind" else UnbindEvent
    return cls(channel=channel, uuid=uuid, timestamp=stamp, client_key=KEY)


def post(receiver: Receiver, *items: tuple[str, str, str, str | int | None]) -> None:
    """Send one body through the receiver and insist that nothing in it failed."""
    outcome = receiver.handle(body(*items), source_hint="presence")
    assert not outcome.rejected and not outcome.failed, outcome


JOINED = ChangeKind.MEMBER_JOINED.value
LEFT = ChangeKind.MEMBER_LEFT.value
OCCUPIED = ChangeKind.CHANNEL_OCCUPIED.value
VACATED = ChangeKind.CHANNEL_VACATED.value
