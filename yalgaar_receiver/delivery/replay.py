"""``replay()``: run the events kept as dead letters through a receiver again.

Imports: the standard library, the core below the receiver, and the delivery room's dead letters.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from ..events import Event, HandlerFailure
from .dead_letters import DeadLetter, DeadLetterSink
from .dispatch import Emitter

__all__ = ["ReplayReport", "replay"]

logger = logging.getLogger("yalgaar_receiver.dead_letters")


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplayReport:
    """What :func:`replay` did.

    :param succeeded: the events whose handlers all ran without raising; their entries are gone.
    :param failed: the failures of this run, stored again as new entries.
    :param skipped: entries that could not be turned back into events; left in the sink.
    """

    succeeded: tuple[Event, ...] = ()
    failed: tuple[HandlerFailure, ...] = ()
    skipped: tuple[DeadLetter, ...] = ()

    def __str__(self) -> str:
        return (
            f"{len(self.succeeded)} event(s) succeeded, {len(self.failed)} handler call(s) "
            f"failed again, {len(self.skipped)} entr(y/ies) skipped"
        )


def replay(sink: DeadLetterSink, receiver: Emitter, *, limit: int | None = None) -> ReplayReport:
    """Run the events kept in ``sink`` through ``receiver`` again.

    Each distinct event runs once, through :meth:`Receiver.emit`: every handler that matches it
    runs, not only the one that failed, so handlers must be idempotent (they must be anyway:
    delivery is at least once). An event whose handlers all succeed has its entries removed; one
    that fails again is stored anew (``attempts`` counted on) before its old entries are
    removed, so a crash during a replay duplicates an entry and never loses one.

    :param limit: replay at most this many events (oldest first).
    """
    groups: dict[str, list[DeadLetter]] = {}
    skipped: list[DeadLetter] = []
    for letter in sink.entries():
        key = json.dumps(letter.event, sort_keys=True)
        if key not in groups and limit is not None and len(groups) >= limit:
            continue
        groups.setdefault(key, []).append(letter)
    succeeded: list[Event] = []
    failed: list[HandlerFailure] = []
    for letters in groups.values():
        try:
            event = letters[0].load_event()
        except ValueError as error:
            logger.warning("Dead letter %s cannot be replayed; kept: %s", letters[0].id, error)
            skipped.extend(letters)
            continue
        failures = receiver.emit(event)
        attempts = max(letter.attempts for letter in letters) + 1
        for failure in failures:
            sink.put(DeadLetter.from_failure(failure, attempts=attempts))
        sink.remove([letter.id for letter in letters])
        if failures:
            failed.extend(failures)
        else:
            succeeded.append(event)
    return ReplayReport(succeeded=tuple(succeeded), failed=tuple(failed), skipped=tuple(skipped))
