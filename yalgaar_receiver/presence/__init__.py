"""Presence state: who is in which channel, derived from the raw bind and unbind events.

* :class:`PresenceTracker` listens to a receiver and sends ``member_joined``, ``member_left``,
  ``channel_occupied`` and ``channel_vacated`` on transitions;
* the state lives in a :class:`PresenceStore`: :class:`MemoryPresenceStore` for one process,
  :class:`RedisPresenceStore` for several; both are a :class:`BatchPresenceStore`, which applies
  the binds and unbinds of a whole request in one call;
* :class:`PresenceChange`, :class:`PresenceUpdate`, :class:`PresenceRules` and
  :class:`ChangeKind` are what the two exchange.

The room sits after the receiver in the flow: it listens to the receiver's signals and the
receiver never imports it. See ``docs/presence.md``.
"""

from __future__ import annotations

from .memory import MemoryPresenceStore as MemoryPresenceStore
from .model import BatchPresenceStore as BatchPresenceStore
from .model import ChangeKind as ChangeKind
from .model import PresenceChange as PresenceChange
from .model import PresenceRules as PresenceRules
from .model import PresenceStore as PresenceStore
from .model import PresenceUpdate as PresenceUpdate
from .redis import RedisPresenceStore as RedisPresenceStore
from .tracker import PresenceTracker as PresenceTracker

__all__ = [
    "BatchPresenceStore",
    "ChangeKind",
    "MemoryPresenceStore",
    "PresenceChange",
    "PresenceRules",
    "PresenceStore",
    "PresenceTracker",
    "PresenceUpdate",
    "RedisPresenceStore",
]
