"""``MemoryPresenceStore``: presence state in this process's memory.

Imports: the standard library and the presence model.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import typing as t
from dataclasses import dataclass

from .._fork import reset_after_fork
from .model import ChangeKind, PresenceChange, PresenceRules, PresenceUpdate

__all__ = ["MemoryPresenceStore"]


@dataclass(slots=True)
class _Record:
    """What a store knows about one (channel, uuid)."""

    #: The largest timestamp applied so far; ``None`` when no applied event had one.
    mark: float | None = None
    present: bool = False
    #: A departure in its grace time: still a member until ``due``.
    pending: bool = False
    #: When a sweep has something to do here: confirm a departure or an expiry (``present``),
    #: or forget the watermark (not ``present``).
    due: float | None = None


class MemoryPresenceStore:
    """The embedded store: dictionaries behind one lock, for a single process.

    Safe to share between threads (the receiver's request threads, a worker, the sweeper).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # A child forked while another thread held the lock would wait for it for ever.
        reset_after_fork(self._after_fork)
        self._records: dict[tuple[str, str], _Record] = {}
        self._members: dict[str, set[str]] = {}
        # (due, sequence, channel, uuid); an entry is stale once its record's ``due`` changed,
        # and is skipped when popped: cheaper than removing it from the middle of the heap.
        self._heap: list[tuple[float, int, str, str]] = []
        self._sequence = itertools.count()
        self._stale: float | None = None

    def __repr__(self) -> str:
        return f"<MemoryPresenceStore channels={len(self._members)}>"

    def _after_fork(self) -> None:
        self._lock = threading.Lock()

    def apply(
        self, update: PresenceUpdate, now: float, rules: PresenceRules
    ) -> list[PresenceChange]:
        return self.apply_many((update,), now, rules)

    def apply_many(
        self, updates: t.Sequence[PresenceUpdate], now: float, rules: PresenceRules
    ) -> list[PresenceChange]:
        with self._lock:
            changes = self._sweep(now, rules)
            for update in updates:
                self._apply(update, now, rules, changes)
            return changes

    def sweep(self, now: float, rules: PresenceRules) -> list[PresenceChange]:
        with self._lock:
            return self._sweep(now, rules)

    def next_deadline(self) -> float | None:
        with self._lock:
            while self._heap:
                due, _, channel, uuid = self._heap[0]
                record = self._records.get((channel, uuid))
                if record is not None and record.due == due:
                    return due
                heapq.heappop(self._heap)
            return None

    def members(self, channel: str) -> frozenset[str]:
        with self._lock:
            return frozenset(self._members.get(channel, ()))

    def occupancy(self, channel: str) -> int:
        with self._lock:
            return len(self._members.get(channel, ()))

    def departing(self, channel: str) -> frozenset[str]:
        with self._lock:
            return frozenset(
                uuid
                for uuid in self._members.get(channel, ())
                if self._records[channel, uuid].pending
            )

    def channels(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._members)

    def counts(self) -> tuple[int, int]:
        with self._lock:
            return len(self._members), sum(len(uuids) for uuids in self._members.values())

    def mark_stale(self, when: float) -> None:
        with self._lock:
            if self._stale is None:
                self._stale = when

    def stale_since(self) -> float | None:
        return self._stale

    def clear_stale(self) -> None:
        self._stale = None

    def _apply(
        self,
        update: PresenceUpdate,
        now: float,
        rules: PresenceRules,
        changes: list[PresenceChange],
    ) -> None:
        key = (update.channel, update.uuid)
        record = self._records.get(key) or _Record()
        stamp = update.timestamp
        if stamp is not None and record.mark is not None and stamp < record.mark:
            return  # stale: an older event than one already applied
        if stamp is not None:
            record.mark = stamp
        self._records[key] = record
        ttl_due = None if rules.member_ttl is None else now + rules.member_ttl
        if update.action == "bind":
            if not record.present:
                members = self._members.setdefault(update.channel, set())
                members.add(update.uuid)
                record.present = True
                changes.append(_change(ChangeKind.MEMBER_JOINED, key))
                if len(members) == 1:
                    changes.append(_change(ChangeKind.CHANNEL_OCCUPIED, key))
            record.pending = False  # a bind in the grace time cancels the departure
            self._schedule(key, record, ttl_due)
        elif not record.present:
            self._retire(key, record, now, rules)
        elif record.pending:
            pass  # already leaving: the first unbind's deadline stands
        elif rules.grace_seconds > 0:
            record.pending = True
            self._schedule(key, record, now + rules.grace_seconds)
        else:
            self._depart(key, record, now, rules, changes)

    def _sweep(self, now: float, rules: PresenceRules) -> list[PresenceChange]:
        changes: list[PresenceChange] = []
        while self._heap and self._heap[0][0] <= now:
            due, _, channel, uuid = heapq.heappop(self._heap)
            key = (channel, uuid)
            record = self._records.get(key)
            if record is None or record.due != due:
                continue
            if record.present:
                self._depart(key, record, now, rules, changes)
            else:
                del self._records[key]
        return changes

    def _depart(
        self,
        key: tuple[str, str],
        record: _Record,
        now: float,
        rules: PresenceRules,
        changes: list[PresenceChange],
    ) -> None:
        channel, uuid = key
        members = self._members[channel]
        members.discard(uuid)
        changes.append(_change(ChangeKind.MEMBER_LEFT, key))
        if not members:
            del self._members[channel]
            changes.append(_change(ChangeKind.CHANNEL_VACATED, key))
        self._retire(key, record, now, rules)

    def _retire(
        self, key: tuple[str, str], record: _Record, now: float, rules: PresenceRules
    ) -> None:
        """Keep an absent uuid's record only as long as its watermark is worth remembering."""
        record.present = record.pending = False
        if record.mark is None:
            self._records.pop(key, None)
        else:
            self._schedule(key, record, now + rules.watermark_ttl)

    def _schedule(self, key: tuple[str, str], record: _Record, due: float | None) -> None:
        record.due = due
        if due is not None:
            heapq.heappush(self._heap, (due, next(self._sequence), *key))


def _change(kind: ChangeKind, key: tuple[str, str]) -> PresenceChange:
    return PresenceChange(kind=kind, channel=key[0], uuid=key[1])
