"""What presence state is made of: transitions, updates, timing rules and the store interface.

The stores (:mod:`~yalgaar_receiver.presence.memory`, :mod:`~yalgaar_receiver.presence.redis`)
implement :class:`PresenceStore`; the tracker (:mod:`~yalgaar_receiver.presence.tracker`) turns
bind and unbind events into :class:`PresenceUpdate` values and the :class:`PresenceChange`
values a store returns into handler calls and signals. Every rule is written in
``docs/presence.md``.

Imports: the standard library.
"""

from __future__ import annotations

import enum
import typing as t
from dataclasses import dataclass

__all__ = [
    "BatchPresenceStore",
    "ChangeKind",
    "PresenceChange",
    "PresenceRules",
    "PresenceStore",
    "PresenceUpdate",
]


class ChangeKind(enum.Enum):
    """The four transitions, named after their signals."""

    MEMBER_JOINED = "member_joined"
    MEMBER_LEFT = "member_left"
    CHANNEL_OCCUPIED = "channel_occupied"
    CHANNEL_VACATED = "channel_vacated"


@dataclass(frozen=True, slots=True, kw_only=True)
class PresenceChange:
    """One transition of the presence state.

    :param kind: what happened.
    :param channel: the channel it happened to.
    :param uuid: the member that joined or left; for ``channel_occupied`` and ``channel_vacated``,
        the member whose join or departure caused it.
    """

    kind: ChangeKind
    channel: str
    uuid: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PresenceUpdate:
    """A bind or unbind as a store sees it.

    :param action: ``"bind"`` or ``"unbind"``.
    :param timestamp: the sender's time in seconds since the epoch, ``None`` when it had none.
    """

    action: t.Literal["bind", "unbind"]
    channel: str
    uuid: str
    timestamp: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class PresenceRules:
    """The tracker's timing settings, handed to the store with every call.

    :param grace_seconds: how long a departure stays pending; 0 confirms it at once.
    :param member_ttl: how long a member stays without a new bind; ``None`` for ever.
    :param watermark_ttl: how long the timestamp of a departed uuid is remembered.
    """

    grace_seconds: float = 0.0
    member_ttl: float | None = None
    watermark_ttl: float = 3600.0


@t.runtime_checkable
class PresenceStore(t.Protocol):
    """Where presence state lives. Each method is atomic with respect to every other caller,
    including other processes sharing the same store.

    ``apply`` and ``sweep`` return the transitions they caused, in order, and a transition is
    returned to exactly one caller. ``now`` is the tracker's clock, in seconds since the epoch.
    """

    def apply(
        self, update: PresenceUpdate, now: float, rules: PresenceRules
    ) -> list[PresenceChange]:
        """Confirm what is due at ``now``, then apply ``update``."""
        ...

    def sweep(self, now: float, rules: PresenceRules) -> list[PresenceChange]:
        """Confirm the departures and expiries due at ``now``; forget old watermarks."""
        ...

    def next_deadline(self) -> float | None:
        """When the next sweep has something to do (``None``: nothing is scheduled)."""
        ...

    def members(self, channel: str) -> frozenset[str]:
        """The members of ``channel``, departures in their grace time included."""
        ...

    def occupancy(self, channel: str) -> int:
        """``len(members(channel))``, without fetching the members."""
        ...

    def departing(self, channel: str) -> frozenset[str]:
        """The members of ``channel`` whose departure is pending (in its grace time)."""
        ...

    def channels(self) -> frozenset[str]:
        """Every channel with at least one member."""
        ...

    def counts(self) -> tuple[int, int]:
        """How many channels have members, and how many members they hold in all (a uuid in
        two channels counts twice)."""
        ...

    def mark_stale(self, when: float) -> None:
        """Note that the state may have missed events since ``when`` (the earliest is kept)."""
        ...

    def stale_since(self) -> float | None:
        """When the state was first marked stale, or ``None``."""
        ...

    def clear_stale(self) -> None:
        """Forget the stale mark: the state is known to be right again."""
        ...


@t.runtime_checkable
class BatchPresenceStore(PresenceStore, t.Protocol):
    """A :class:`PresenceStore` that applies many updates in one call: the tracker gives it
    the binds and unbinds of a whole envelope at once (one Redis script, not one per event).
    Both of the package's stores are; the tracker applies updates one by one through a store
    that is not."""

    def apply_many(
        self, updates: t.Sequence[PresenceUpdate], now: float, rules: PresenceRules
    ) -> list[PresenceChange]:
        """Confirm what is due at ``now``, then apply each of ``updates`` in order: the
        transitions that many calls of ``apply`` would return, atomically."""
        ...
