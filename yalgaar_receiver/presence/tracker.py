"""``PresenceTracker``: who is in which channel, kept from one receiver's bind and unbind events.

The tracker listens to a receiver's ``bind`` and ``unbind`` signals, keeps a member set per
channel in a store, and sends ``member_joined``, ``member_left``, ``channel_occupied`` and
``channel_vacated`` on transitions only. It is built for what a real sender does: batches out of
order (an order guard per channel and uuid), resends (a bind for a member changes nothing),
flapping connections (a grace time before a departure counts) and several app servers sharing one
state (:class:`~yalgaar_receiver.presence.RedisPresenceStore`). Every rule is written down in
``docs/presence.md``.

Imports: the core (signals, events, settings, routing, the receiver, as the sender it listens to)
and the presence model and stores.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
import typing as t
from datetime import datetime, timezone

from blinker import Signal

from .. import settings, signals
from .._fork import reset_after_fork
from ..delivery.dispatch import defer
from ..events import BindEvent, Event, UnbindEvent
from ..receiver import Receiver
from ..routing import Decorator, Registry, deliver, handler_name, listened, notify
from ..wire import preview
from .memory import MemoryPresenceStore
from .model import (
    BatchPresenceStore,
    ChangeKind,
    PresenceChange,
    PresenceRules,
    PresenceStore,
    PresenceUpdate,
)

__all__ = ["PresenceTracker"]

logger = logging.getLogger("yalgaar_receiver.presence")


_SIGNALS: t.Final[t.Mapping[ChangeKind, Signal]] = {
    ChangeKind.MEMBER_JOINED: signals.member_joined,
    ChangeKind.MEMBER_LEFT: signals.member_left,
    ChangeKind.CHANNEL_OCCUPIED: signals.channel_occupied,
    ChangeKind.CHANNEL_VACATED: signals.channel_vacated,
}
_MEMBER_KINDS: t.Final = frozenset({ChangeKind.MEMBER_JOINED, ChangeKind.MEMBER_LEFT})


class PresenceTracker:
    """Who is in which channel, kept from one receiver's bind and unbind events.

    The tracker connects to ``signals.bind`` and ``signals.unbind`` for ``receiver`` (strong
    references), so it sees every event whichever dispatcher runs it, and leaves the raw handlers
    alone. Transitions go to the decorated handlers, in registration order, then to the presence
    signals, whose sender is the tracker. A handler that raises is logged and reported on
    ``signals.presence_handler_failed`` (sender: the tracker, ``change=`` the
    :class:`~yalgaar_receiver.presence.PresenceChange`); it never stops the other handlers and
    never undoes the state. The binds and unbinds of one request (or envelope task) are applied
    together once its events have run, in one store call (``apply_many``); a store that fails
    (Redis down) raises into the receiver, which reports those events as failed so that the
    sender retries them.

    :param store: where the state lives; a new :class:`MemoryPresenceStore` by default.
    :param grace_seconds: how long a departure stays pending; a bind within it cancels the
        departure silently. 0 (the default) confirms departures at once.
    :param member_ttl: drop a member this many seconds after its last bind, for senders that lose
        unbinds; ``None`` (the default) keeps members until they unbind.
    :param watermark_ttl: how long the last timestamp of a departed uuid is remembered, to refuse
        its late events.
    :param sweep_interval: the longest the background sweeper sleeps between sweeps; ``None``
        starts no thread (call :meth:`sweep` yourself). The thread runs only when there can be
        deadlines (``grace_seconds`` or ``member_ttl`` set).
    :param clock: seconds since the epoch; all processes sharing a store must agree on it.
    """

    _batches: BatchPresenceStore | None

    def __init__(
        self,
        receiver: Receiver,
        *,
        store: PresenceStore | None = None,
        grace_seconds: float = 0.0,
        member_ttl: float | None = None,
        watermark_ttl: float = 3600.0,
        sweep_interval: float | None = 1.0,
        clock: t.Callable[[], float] = time.time,
    ) -> None:
        self.receiver = receiver
        self.store: PresenceStore = store if store is not None else MemoryPresenceStore()
        # Decided once, as the receiver decides for its de-duplication store.
        self._batches = self.store if isinstance(self.store, BatchPresenceStore) else None
        self.rules = PresenceRules(
            grace_seconds=settings.positive_number(grace_seconds, "grace_seconds", or_zero=True),
            member_ttl=(
                None if member_ttl is None else settings.positive_number(member_ttl, "member_ttl")
            ),
            watermark_ttl=settings.positive_number(watermark_ttl, "watermark_ttl"),
        )
        if sweep_interval is not None:
            sweep_interval = settings.positive_number(sweep_interval, "sweep_interval")
        self.clock = clock
        self._registry: Registry[ChangeKind] = Registry(lambda key, kind: key is kind)
        #: Handlers called as ``handler(channel, uuid)`` when a uuid joins a channel.
        self.on_member_joined = Decorator(self._registry, ChangeKind.MEMBER_JOINED)
        #: Handlers called as ``handler(channel, uuid)`` when a departure is confirmed.
        self.on_member_left = Decorator(self._registry, ChangeKind.MEMBER_LEFT)
        #: Handlers called as ``handler(channel)`` when a channel gets its first member.
        self.on_channel_occupied = Decorator(self._registry, ChangeKind.CHANNEL_OCCUPIED)
        #: Handlers called as ``handler(channel)`` when a channel loses its last member.
        self.on_channel_vacated = Decorator(self._registry, ChangeKind.CHANNEL_VACATED)
        # One lock around "change the store, then deliver", so that this process delivers the
        # transitions in the order the store made them, whichever thread made them.
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._closed = False
        # The binds and unbinds of a request are applied together, at the end of its unit.
        receiver.enable_units()
        signals.bind.connect(self._on_presence, sender=receiver, weak=False)
        signals.unbind.connect(self._on_presence, sender=receiver, weak=False)
        signals.possible_loss.connect(self._on_possible_loss, sender=receiver, weak=False)
        self._sweeper: threading.Thread | None = None
        timed = self.rules.grace_seconds > 0 or self.rules.member_ttl is not None
        self._sweep_interval = sweep_interval if timed else None
        self._start_sweeper()
        if self._sweeper is not None:
            # A child forked after this (gunicorn --preload, a Celery pool) inherits no thread
            # and perhaps a held lock: it gets fresh ones.
            reset_after_fork(self._after_fork)

    def __repr__(self) -> str:
        return f"<PresenceTracker store={self.store!r} grace={self.rules.grace_seconds}>"

    def __enter__(self) -> PresenceTracker:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- reading ---------------------------------------------------------------------------

    def members(self, channel: str) -> frozenset[str]:
        """The uuids in ``channel`` now, including departures still in their grace time."""
        return self.store.members(channel)

    def occupancy(self, channel: str) -> int:
        """How many members ``channel`` has now (0 for a channel never seen)."""
        return self.store.occupancy(channel)

    def channels(self) -> frozenset[str]:
        """Every channel that has at least one member now."""
        return self.store.channels()

    def departing(self, channel: str) -> frozenset[str]:
        """The members of ``channel`` whose departure is pending: unbound, but still in their
        grace time (always empty with ``grace_seconds=0``)."""
        return self.store.departing(channel)

    def counts(self) -> tuple[int, int]:
        """How many channels have members, and how many members they hold in all."""
        return self.store.counts()

    @property
    def stale_since(self) -> datetime | None:
        """When a Presence envelope first came as full as the sender makes them
        (``possible_loss``): the sender probably dropped events then, an unbind among them
        perhaps, so members shown may have left. ``None`` while nothing suggests it. Kept in
        the store, so every process sharing it sees the mark; :meth:`clear_stale` clears it."""
        when = self.store.stale_since()
        return None if when is None else datetime.fromtimestamp(when, timezone.utc)

    def clear_stale(self) -> None:
        """Forget the stale mark, once the state is known to be right again (the app has
        rebuilt it, or the members it shows were checked)."""
        self.store.clear_stale()

    # -- changing --------------------------------------------------------------------------

    def sweep(self) -> tuple[PresenceChange, ...]:
        """Confirm the departures and expiries that are due, and deliver them.

        The background sweeper calls this; with ``sweep_interval=None`` call it yourself (from a
        scheduler, or in tests after moving the clock). Every event applied sweeps first too.
        """
        with self._lock:
            changes = self.store.sweep(self.clock(), self.rules)
            self._deliver(changes)
        return tuple(changes)

    def close(self) -> None:
        """Stop listening to the receiver and stop the sweeper; the state stays in the store."""
        if self._closed:
            return
        self._closed = True
        # From every sender: blinker keeps a strong reference until a receiver is disconnected
        # from all of them, and this bound method is connected for one receiver only.
        signals.bind.disconnect(self._on_presence)
        signals.unbind.disconnect(self._on_presence)
        signals.possible_loss.disconnect(self._on_possible_loss)
        self._stop.set()
        self._wake.set()
        if self._sweeper is not None and self._sweeper is not threading.current_thread():
            self._sweeper.join()

    def _on_presence(self, sender: Receiver, *, event: Event, **extra: t.Any) -> None:
        if not isinstance(event, (BindEvent, UnbindEvent)) or event.uuid is None:
            # Nothing to track without a uuid; the raw handlers still got the event.
            logger.debug("Presence event without a uuid, not tracked: %s", preview(event, 500))
            return
        if not (_is_text(event.channel) and _is_text(event.uuid)):
            # A lone surrogate (JSON "\ud800") cannot be stored as UTF-8: failing the request
            # would make the sender resend it for ever, so it is skipped, loudly, in every store.
            logger.warning(
                "Presence event with a channel or uuid that is not text: %s", preview(event, 500)
            )
            return
        update = PresenceUpdate(
            action="bind" if isinstance(event, BindEvent) else "unbind",
            channel=event.channel,
            uuid=event.uuid,
            timestamp=None if event.timestamp is None else event.timestamp.timestamp(),
        )
        # In a unit of work (a request, an envelope task) the updates are applied together
        # once its events have run; an event run alone applies its own now.
        if not defer(self.apply_updates, event, update):
            self._apply((update,))

    def apply_updates(self, items: t.Sequence[tuple[Event, PresenceUpdate]]) -> None:
        """Apply a unit of work's presence updates (each with the event it came from) to the
        store in one call, and deliver their transitions.

        The receiver calls it once a request's (or an envelope task's) events have run. Its
        name is what logs, ``yalgaar_handler_seconds{handler=...}`` and ``yalgaar.handle`` spans
        show for that call, so it is public and stays put; user code has no need to call it.
        """
        self._apply([update for _, update in items])

    def _apply(self, updates: t.Sequence[PresenceUpdate]) -> None:
        """Apply ``updates`` in order and deliver the transitions; a store failure raises, and
        fails the events the updates came from."""
        with self._lock:
            now = self.clock()
            if self._batches is not None:
                changes = self._batches.apply_many(updates, now, self.rules)
            else:
                changes = [c for u in updates for c in self.store.apply(u, now, self.rules)]
            self._deliver(changes)
            if listened(signals.presence_applied, self):
                notify(
                    self, signals.presence_applied, channels=frozenset(u.channel for u in updates)
                )
        if self.rules.member_ttl is not None or any(u.action == "unbind" for u in updates):
            self._wake.set()  # a new deadline may be sooner than the sweeper's next wake-up

    def _on_possible_loss(
        self, sender: Receiver, *, source: str, at: datetime, **extra: t.Any
    ) -> None:
        if source in ("presence", ""):  # "": items of either kind, so perhaps presence
            self.store.mark_stale(at.timestamp())
            logger.warning(
                "Presence state marked stale: a Presence envelope was as full as the sender "
                "makes them, so events (an unbind among them, perhaps) were probably dropped"
            )

    def _deliver(self, changes: t.Sequence[PresenceChange]) -> None:
        for change in changes:
            member = change.kind in _MEMBER_KINDS
            args = (change.channel, change.uuid) if member else (change.channel,)
            kwargs = {"channel": change.channel, "uuid": change.uuid}
            if not member:
                del kwargs["uuid"]
            deliver(
                self._registry.routes_for(change.kind),
                change,
                args,
                (_SIGNALS[change.kind],),
                self,
                kwargs,
                functools.partial(self._failed, change),
            )

    def _failed(
        self, change: PresenceChange, handler: t.Callable[..., t.Any], error: BaseException
    ) -> None:
        logger.error(
            "Presence handler %s raised on %s",
            handler_name(handler),
            preview(change, 500),
            exc_info=error,
        )
        notify(self, signals.presence_handler_failed, change=change, handler=handler, error=error)

    def _start_sweeper(self) -> None:
        if self._sweep_interval is None or self._closed:
            return
        self._sweeper = threading.Thread(
            target=self._sweep_forever,
            args=(float(self._sweep_interval),),
            name="yalgaar-presence-sweeper",
            daemon=True,
        )
        self._sweeper.start()

    def _after_fork(self) -> None:
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._sweeper = None
        self._start_sweeper()

    def _sweep_forever(self, interval: float) -> None:
        while not self._stop.is_set():
            delay = interval
            try:
                self.sweep()
                deadline = self.store.next_deadline()
                if deadline is not None:
                    delay = min(interval, max(0.0, deadline - self.clock()))
            except Exception:
                # A store outage must not kill the thread: the next sweep catches up.
                logger.exception("Presence sweep failed; retrying in %s s", interval)
            # Never spin: a deadline that is due again at once waits a little.
            self._wake.wait(max(delay, 0.01))
            self._wake.clear()


def _is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
