"""Presence state: who is in which channel, derived from the raw bind and unbind events.

A :class:`PresenceTracker` listens to one receiver's ``bind`` and ``unbind`` signals, keeps a member
set per channel in a store, and sends ``member_joined``, ``member_left``, ``channel_occupied`` and
``channel_vacated`` on transitions only. It is built for what a real sender does: batches out of
order (an order guard per channel and uuid), resends (a bind for a member changes nothing),
flapping connections (a grace time before a departure counts) and several app servers sharing one
state (:class:`RedisPresenceStore`, whose Lua scripts make each transition happen exactly once).
Every rule is written down in ``docs/presence.md``; the stores implement the same rules and the
tests hold them to it.

This module imports the standard library and blinker only. :class:`RedisPresenceStore` takes a
redis-py client object that the application builds, so ``redis`` is never imported here.
"""

from __future__ import annotations

import enum
import heapq
import itertools
import logging
import os
import threading
import time
import typing as t
import weakref
from dataclasses import dataclass

from blinker import Signal

from . import signals
from .events import BindEvent, Event, UnbindEvent
from .exceptions import ConfigurationError
from .receiver import Receiver, _call, _name
from .routing import Decorator, Registry

__all__ = [
    "ChangeKind",
    "MemoryPresenceStore",
    "PresenceChange",
    "PresenceRules",
    "PresenceStore",
    "PresenceTracker",
    "PresenceUpdate",
    "RedisPresenceStore",
]

logger = logging.getLogger("yalgaar_receiver.presence")


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


# -- the embedded store -------------------------------------------------------------------------


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
        if hasattr(os, "register_at_fork"):
            # A child forked while another thread held the lock would wait for it for ever.
            ref = weakref.WeakMethod(self._after_fork)
            os.register_at_fork(after_in_child=lambda: (m := ref()) and m())
        self._records: dict[tuple[str, str], _Record] = {}
        self._members: dict[str, set[str]] = {}
        # (due, sequence, channel, uuid); an entry is stale once its record's ``due`` changed,
        # and is skipped when popped: cheaper than removing it from the middle of the heap.
        self._heap: list[tuple[float, int, str, str]] = []
        self._sequence = itertools.count()

    def __repr__(self) -> str:
        return f"<MemoryPresenceStore channels={len(self._members)}>"

    def _after_fork(self) -> None:
        self._lock = threading.Lock()

    def apply(
        self, update: PresenceUpdate, now: float, rules: PresenceRules
    ) -> list[PresenceChange]:
        with self._lock:
            changes = self._sweep(now, rules)
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


# -- the shared store ---------------------------------------------------------------------------

# The same rules as MemoryPresenceStore, as Lua run atomically inside Redis: two processes applying
# events for one channel at once are serialised by the server, so each transition is returned to
# exactly one of them. Layout under the prefix:
#   members:<channel>  SET of uuids (departures in their grace time included)
#   state:<channel>    HASH uuid -> "<present 0|1><pending 0|1>:<mark or empty>"
#   due                ZSET "<len(channel)>:<channel><uuid>" -> when a sweep has work there
#   channels           SET of channels with at least one member
# Times come in as Python reprs of floats and are stored as given: Lua's tostring keeps only 14
# digits, which would round sub-millisecond timestamps.
_LUA_COMMON = """
local prefix = ARGV[1]
local now = ARGV[2]
local due_forget = ARGV[3]
local limit = tonumber(ARGV[4])
local DUE = prefix .. 'due'
local CHANNELS = prefix .. 'channels'
local out = {'applied'}

local function mkey(c) return prefix .. 'members:' .. c end
local function skey(c) return prefix .. 'state:' .. c end
local function ref(c, u) return #c .. ':' .. c .. u end
local function unref(r)
  local colon = string.find(r, ':', 1, true)
  local n = tonumber(string.sub(r, 1, colon - 1))
  return string.sub(r, colon + 1, colon + n), string.sub(r, colon + n + 1)
end
local function load(c, u)
  local raw = redis.call('HGET', skey(c), u)
  if not raw then return {present = false, pending = false, mark = ''} end
  return {present = string.sub(raw, 1, 1) == '1', pending = string.sub(raw, 2, 2) == '1',
          mark = string.sub(raw, 4)}
end
local function save(c, u, s)
  redis.call('HSET', skey(c), u,
    (s.present and '1' or '0') .. (s.pending and '1' or '0') .. ':' .. s.mark)
end
local function schedule(c, u, due)
  if due == '' then redis.call('ZREM', DUE, ref(c, u))
  else redis.call('ZADD', DUE, due, ref(c, u)) end
end
local function emit(kind, c, u)
  out[#out + 1] = kind; out[#out + 1] = c; out[#out + 1] = u
end
local function retire(c, u, s)
  s.present = false; s.pending = false
  if s.mark == '' then
    redis.call('HDEL', skey(c), u)
    redis.call('ZREM', DUE, ref(c, u))
  else
    save(c, u, s)
    schedule(c, u, due_forget)
  end
end
local function depart(c, u, s)
  redis.call('SREM', mkey(c), u)
  emit('member_left', c, u)
  if redis.call('SCARD', mkey(c)) == 0 then
    redis.call('SREM', CHANNELS, c)
    emit('channel_vacated', c, u)
  end
  retire(c, u, s)
end
local function settle(r)
  local c, u = unref(r)
  local s = load(c, u)
  if s.present then
    depart(c, u, s)
  else
    redis.call('HDEL', skey(c), u)
    redis.call('ZREM', DUE, r)
  end
end
local function sweep()
  local due = redis.call('ZRANGEBYSCORE', DUE, '-inf', now, 'LIMIT', 0, limit)
  for _, r in ipairs(due) do settle(r) end
  return #due
end
"""

_LUA_SWEEP = (
    _LUA_COMMON
    + """
out[1] = tostring(sweep())
return out
"""
)

_LUA_APPLY = (
    _LUA_COMMON
    + """
local action, c, u, ts = ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local due_grace, due_ttl = ARGV[9], ARGV[10]
sweep()
-- The sweep above is bounded; this record's own deadline is settled first in any case.
local own = redis.call('ZSCORE', DUE, ref(c, u))
if own and tonumber(own) <= tonumber(now) then settle(ref(c, u)) end
local s = load(c, u)
if ts ~= '' and s.mark ~= '' and tonumber(ts) < tonumber(s.mark) then
  out[1] = 'stale'
  return out
end
if ts ~= '' then s.mark = ts end
if action == 'bind' then
  if not s.present then
    redis.call('SADD', mkey(c), u)
    s.present = true
    emit('member_joined', c, u)
    if redis.call('SCARD', mkey(c)) == 1 then
      redis.call('SADD', CHANNELS, c)
      emit('channel_occupied', c, u)
    end
  end
  s.pending = false
  save(c, u, s)
  schedule(c, u, due_ttl)
elseif not s.present then
  retire(c, u, s)
elseif s.pending then
  save(c, u, s)
elseif due_grace ~= '' then
  s.pending = true
  save(c, u, s)
  schedule(c, u, due_grace)
else
  depart(c, u, s)
end
return out
"""
)


class _RedisClient(t.Protocol):
    """The part of a redis-py client this store uses (``redis.Redis``)."""

    def register_script(self, script: str) -> t.Any: ...
    def zrange(self, name: str, start: int, end: int, *, withscores: bool) -> t.Any: ...
    def smembers(self, name: str) -> t.Any: ...
    def scard(self, name: str) -> t.Any: ...
    def hgetall(self, name: str) -> t.Any: ...


class RedisPresenceStore:
    """Presence state in Redis, shared by every process that uses the same server and prefix.

    Each call is one Lua script, run atomically by the server, so two app servers applying events
    for the same channel at once still produce each transition exactly once, and a due departure
    is confirmed by whichever process sweeps first. One server or a primary with replicas: the
    scripts compute their keys, so Redis Cluster is not supported.

    :param redis_client: a ``redis.Redis`` (or compatible) client; ``decode_responses`` may be
        either.
    :param prefix: the start of every key this store writes; give each tracker its own.
    :param sweep_limit: the most due entries one script settles, so that one call never holds
        the server for long; :meth:`sweep` repeats until the backlog is gone.
    """

    def __init__(
        self,
        redis_client: _RedisClient,
        *,
        prefix: str = "yalgaar:presence:",
        sweep_limit: int = 200,
    ) -> None:
        if sweep_limit < 1:
            raise ConfigurationError(f"sweep_limit must be at least 1, not {sweep_limit!r}.")
        self.client = redis_client
        self.prefix = prefix
        self.sweep_limit = sweep_limit
        self._apply_script = redis_client.register_script(_LUA_APPLY)
        self._sweep_script = redis_client.register_script(_LUA_SWEEP)

    def __repr__(self) -> str:
        return f"<RedisPresenceStore prefix={self.prefix!r}>"

    def apply(
        self, update: PresenceUpdate, now: float, rules: PresenceRules
    ) -> list[PresenceChange]:
        grace = rules.grace_seconds
        ttl = rules.member_ttl
        reply = self._apply_script(
            args=[
                *self._common(now, rules),
                update.action,
                update.channel,
                update.uuid,
                "" if update.timestamp is None else repr(float(update.timestamp)),
                repr(now + grace) if grace > 0 else "",
                "" if ttl is None else repr(now + ttl),
            ]
        )
        return _changes(reply)

    def sweep(self, now: float, rules: PresenceRules) -> list[PresenceChange]:
        changes: list[PresenceChange] = []
        while True:
            reply = self._sweep_script(args=self._common(now, rules))
            changes.extend(_changes(reply))
            if int(_text(reply[0])) < self.sweep_limit:
                return changes

    def next_deadline(self) -> float | None:
        first = self.client.zrange(self.prefix + "due", 0, 0, withscores=True)
        return float(first[0][1]) if first else None

    def members(self, channel: str) -> frozenset[str]:
        return frozenset(_text(m) for m in self.client.smembers(self._members_key(channel)))

    def occupancy(self, channel: str) -> int:
        return int(self.client.scard(self._members_key(channel)))

    def departing(self, channel: str) -> frozenset[str]:
        # "11:..." is present and pending; see the layout above _LUA_COMMON.
        states = self.client.hgetall(f"{self.prefix}state:{channel}")
        return frozenset(_text(u) for u, state in states.items() if _text(state)[:2] == "11")

    def channels(self) -> frozenset[str]:
        return frozenset(_text(c) for c in self.client.smembers(self.prefix + "channels"))

    def _members_key(self, channel: str) -> str:
        return f"{self.prefix}members:{channel}"

    def _common(self, now: float, rules: PresenceRules) -> list[str]:
        return [self.prefix, repr(now), repr(now + rules.watermark_ttl), str(self.sweep_limit)]


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def _changes(reply: t.Sequence[bytes | str]) -> list[PresenceChange]:
    items = [_text(v) for v in reply[1:]]
    return [
        PresenceChange(kind=ChangeKind(items[i]), channel=items[i + 1], uuid=items[i + 2])
        for i in range(0, len(items), 3)
    ]


# -- the tracker --------------------------------------------------------------------------------

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
    ``signals.handler_failed`` (sender: the tracker, ``event=`` the :class:`PresenceChange`); it
    never stops the other handlers and never undoes the state. A store that fails (Redis down)
    raises into the receiver, which reports the event as failed so that the sender retries it.

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
        _check(grace_seconds >= 0, "grace_seconds", grace_seconds, "0 or more")
        _check(member_ttl is None or member_ttl > 0, "member_ttl", member_ttl, "positive or None")
        _check(watermark_ttl > 0, "watermark_ttl", watermark_ttl, "positive")
        _check(
            sweep_interval is None or sweep_interval > 0,
            "sweep_interval",
            sweep_interval,
            "positive or None",
        )
        self.receiver = receiver
        self.store: PresenceStore = store if store is not None else MemoryPresenceStore()
        self.rules = PresenceRules(
            grace_seconds=float(grace_seconds),
            member_ttl=None if member_ttl is None else float(member_ttl),
            watermark_ttl=float(watermark_ttl),
        )
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
        signals.bind.connect(self._on_presence, sender=receiver, weak=False)
        signals.unbind.connect(self._on_presence, sender=receiver, weak=False)
        self._sweeper: threading.Thread | None = None
        timed = self.rules.grace_seconds > 0 or self.rules.member_ttl is not None
        self._sweep_interval = sweep_interval if timed else None
        self._start_sweeper()
        if self._sweeper is not None and hasattr(os, "register_at_fork"):
            # A child forked after this (gunicorn --preload, a Celery pool) inherits no thread
            # and perhaps a held lock: it gets fresh ones. A weak reference, so that the hook
            # does not keep a closed tracker alive.
            ref = weakref.WeakMethod(self._after_fork)
            os.register_at_fork(after_in_child=lambda: (m := ref()) and m())

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
        self._stop.set()
        self._wake.set()
        if self._sweeper is not None and self._sweeper is not threading.current_thread():
            self._sweeper.join()

    def _on_presence(self, sender: Receiver, *, event: Event, **extra: t.Any) -> None:
        if not isinstance(event, (BindEvent, UnbindEvent)) or event.uuid is None:
            # Nothing to track without a uuid; the raw handlers still got the event.
            logger.debug("Presence event without a uuid, not tracked: %r", event)
            return
        if not (_is_text(event.channel) and _is_text(event.uuid)):
            # A lone surrogate (JSON "\ud800") cannot be stored as UTF-8: failing the request
            # would make the sender resend it for ever, so it is skipped, loudly, in every store.
            logger.warning("Presence event with a channel or uuid that is not text: %r", event)
            return
        update = PresenceUpdate(
            action="bind" if isinstance(event, BindEvent) else "unbind",
            channel=event.channel,
            uuid=event.uuid,
            timestamp=None if event.timestamp is None else event.timestamp.timestamp(),
        )
        with self._lock:
            changes = self.store.apply(update, self.clock(), self.rules)
            self._deliver(changes)
        if update.action == "unbind" or self.rules.member_ttl is not None:
            self._wake.set()  # a new deadline may be sooner than the sweeper's next wake-up

    def _deliver(self, changes: t.Sequence[PresenceChange]) -> None:
        for change in changes:
            member = change.kind in _MEMBER_KINDS
            args = (change.channel, change.uuid) if member else (change.channel,)
            for route in self._registry.routes_for(change.kind):
                try:
                    if not route.filters or route.matches(change):
                        _call(route.handler, *args)
                except Exception as error:
                    self._failed(change, route.handler, error)
            signal = _SIGNALS[change.kind]
            if not signal.receivers:
                continue
            kwargs = {"channel": change.channel}
            if member:
                kwargs["uuid"] = change.uuid
            for subscriber in signal.receivers_for(self):
                try:
                    _call(subscriber, self, **kwargs)
                except Exception as error:
                    self._failed(change, subscriber, error)

    def _failed(
        self, change: PresenceChange, handler: t.Callable[..., t.Any], error: Exception
    ) -> None:
        logger.error("Presence handler %s raised on %r", _name(handler), change, exc_info=error)
        for subscriber in signals.handler_failed.receivers_for(self):
            try:
                _call(subscriber, self, event=change, handler=handler, error=error)
            except Exception:
                logger.exception(
                    "Subscriber %s of handler-failed raised; ignored", _name(subscriber)
                )

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


def _check(ok: bool, name: str, value: object, expected: str) -> None:
    if not ok:
        raise ConfigurationError(f"{name} must be {expected}, not {value!r}.")
