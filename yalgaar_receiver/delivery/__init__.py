"""Delivery: when and where handlers run, and what happens to an event that fails.

* dispatchers: :class:`InlineDispatcher` (the default), :class:`ThreadPoolDispatcher`, and
  :class:`~yalgaar_receiver.celery.CeleryDispatcher` in its own module (``yalgaar_receiver.celery``,
  the optional extra ``celery``);
* de-duplication stores: :class:`MemoryDedupeStore`, :class:`RedisDedupeStore`, and the key
  recipe :func:`event_key`;
* dead letters: :class:`DeadLetter` in a :class:`JsonLinesDeadLetterSink` or a
  :class:`RedisDeadLetterSink`, run again by :func:`replay`;
* the versioned JSON form an event travels in (:mod:`~yalgaar_receiver.delivery.serialization`).

The room sits between events and handlers: it imports the core below the receiver (events,
exceptions, settings, routing) and never the receiver, which takes these objects through the
small interfaces in :mod:`~yalgaar_receiver.delivery.dispatch` and
:mod:`~yalgaar_receiver.delivery.dedupe`. See ``docs/delivery.md`` and ``docs/deduplication.md``.
"""

from __future__ import annotations

from .dead_letters import DeadLetter as DeadLetter
from .dead_letters import DeadLetterSink as DeadLetterSink
from .dead_letters import JsonLinesDeadLetterSink as JsonLinesDeadLetterSink
from .dead_letters import RedisDeadLetterSink as RedisDeadLetterSink
from .dedupe import Claim as Claim
from .dedupe import ClaimState as ClaimState
from .dedupe import DedupeStore as DedupeStore
from .dedupe import MemoryDedupeStore as MemoryDedupeStore
from .dedupe import RedisDedupeStore as RedisDedupeStore
from .dedupe import event_key as event_key
from .dispatch import Dispatcher as Dispatcher
from .dispatch import InlineDispatcher as InlineDispatcher
from .replay import ReplayReport as ReplayReport
from .replay import replay as replay
from .threads import ThreadPoolDispatcher as ThreadPoolDispatcher

__all__ = [
    "Claim",
    "ClaimState",
    "DeadLetter",
    "DeadLetterSink",
    "DedupeStore",
    "Dispatcher",
    "InlineDispatcher",
    "JsonLinesDeadLetterSink",
    "MemoryDedupeStore",
    "RedisDeadLetterSink",
    "RedisDedupeStore",
    "ReplayReport",
    "ThreadPoolDispatcher",
    "event_key",
    "replay",
]
