"""De-duplication: run each event once, even when Yalgaar (or a proxy) delivers it again.

Yalgaar sends no event id, so a resend looks like a new delivery. With ``Receiver(dedupe=store)``
every event gets a key (:func:`event_key` by default) and :meth:`Receiver.emit
<yalgaar_receiver.Receiver.emit>` goes through three steps around the handlers:

1. **claim** the key, with a *lease*: only one caller at a time may run the event;
2. run every handler and subscriber;
3. mark the key **done** when all of them succeeded (it then answers "duplicate" for ``ttl``
   seconds), or **release** it when any failed, so that a resend runs the event again. A claim
   that is never finished (the process died) expires after the lease.

Recording the key only after the handlers succeeded is the point: recording it before, as
dj-stripe once did (dj-stripe issue 832), turns a failed handler into an event that is never
retried. ``docs/deduplication.md`` explains what is and is not a duplicate.

Two stores: :class:`MemoryDedupeStore` for one process, :class:`RedisDedupeStore` shared by every
process and machine that talks to one Redis. The Redis store takes a client object the caller
built, so ``redis`` is needed only by whoever builds it (``pip install yalgaar-receiver[redis]``).

Imports: the standard library and the core below the receiver.
"""

from __future__ import annotations

import collections
import enum
import hashlib
import json
import secrets
import threading
import time
import typing as t
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from .. import settings
from .._redis import RedisClient
from ..events import Event, MessageEvent, PresenceAction, PresenceEvent, UnknownEvent
from ..exceptions import ConfigurationError

__all__ = [
    "Attempts",
    "Claim",
    "ClaimState",
    "DedupeStore",
    "KeyFunction",
    "MemoryAttempts",
    "MemoryDedupeStore",
    "RedisDedupeStore",
    "attempt_key",
    "event_key",
]

#: Turns an event into its de-duplication key; ``None`` means "never de-duplicate this event".
KeyFunction = t.Callable[[Event], str | None]

#: Seconds a key stays "done" (a later copy is a duplicate) unless the store is told otherwise.
DEFAULT_TTL: t.Final = 600.0
#: Seconds a claim lasts when it is neither marked done nor released (a crashed process).
DEFAULT_LEASE: t.Final = 60.0
#: The most keys a :class:`MemoryDedupeStore` keeps: Yalgaar sends at most 200 events per
#: 2 seconds, which over the default ttl of 600 seconds is 60,000 keys.
DEFAULT_MAX_ENTRIES: t.Final = 100_000
#: The ``retry_after`` of the refusal when the store fails (Redis unreachable).
STORE_RETRY_AFTER: t.Final = 5.0
#: The ``retry_after`` of the refusal when another delivery of the event is running: handlers
#: usually finish within a second, and a sender's backoff carries later tries past a lease.
BUSY_RETRY_AFTER: t.Final = 1.0

# The first element of the list that event_key hashes; bump it if the recipe ever changes, so
# that keys of the old and new recipe can never collide.
_KEY_VERSION: t.Final = "yalgaar-event-key/1"
_EPOCH: t.Final = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND: t.Final = timedelta(microseconds=1)


def event_key(event: Event) -> str | None:
    """The default key: a SHA-256 over a canonical JSON list of what identifies the event.

    The list is ``["yalgaar-event-key/1", source, client_key, channel, uuid, timestamp, what]``:

    * ``source``: ``"presence"``, ``"message"``, or ``"unknown:"`` followed by the envelope's
      ``source`` for an :class:`~yalgaar_receiver.UnknownEvent`;
    * ``client_key``, ``channel``, ``uuid``: as on the event (``uuid`` may be ``null``);
    * ``timestamp``: whole microseconds since the Unix epoch, an integer, so ``"1521609600"``,
      ``1521609600`` and ``"1521609600000"`` (milliseconds) give the same key;
    * ``what``: for presence the action (``"bind"``, ``"unbind"``, or the raw text of an action
      this package does not know); for a message its text; for an unknown source the item
      itself as JSON with sorted keys.

    The list is encoded with ``json.dumps(..., ensure_ascii=True, separators=(",", ":"))`` and
    the key is the hex SHA-256 of those bytes: the same in every process, on every machine and
    Python version (no ``hash()``, no dict order). An event without a timestamp gets no key
    (``None``) and is never treated as a duplicate: without a time, a resend cannot be told
    apart from the same thing happening again.
    """
    if event.timestamp is None:
        return None
    what: t.Any
    if isinstance(event, PresenceEvent):
        source = "presence"
        what = event.raw_action if event.action is PresenceAction.UNKNOWN else event.action.value
    elif isinstance(event, MessageEvent):
        source = "message"
        what = event.message
    elif isinstance(event, UnknownEvent):
        source = f"unknown:{event.source}"
        what = _canonical(event.raw)
    else:  # an Event subclass of the application's own
        source = f"other:{type(event).__qualname__}"
        what = _canonical(event.raw)
    timestamp = event.timestamp
    if timestamp.tzinfo is None:  # only an application's own event can be naive; take it as UTC
        timestamp = timestamp.replace(tzinfo=timezone.utc)
    micros = (timestamp - _EPOCH) // _MICROSECOND
    parts = [_KEY_VERSION, source, event.client_key, event.channel, event.uuid, micros, what]
    return hashlib.sha256(_canonical(parts).encode("ascii")).hexdigest()


def attempt_key(event: Event, key: KeyFunction = event_key) -> str:
    """The key the failed attempts of ``event`` are counted under: its de-duplication key, or,
    for an event that has none (no timestamp), a SHA-256 of what it holds, so that the same item
    sent again is counted as the same event."""
    found = key(event)
    if found is not None:
        return found
    parts = [_KEY_VERSION, "attempt", type(event).__qualname__, event.client_key, event.raw]
    return hashlib.sha256(_canonical(parts).encode("ascii")).hexdigest()


def _canonical(value: t.Any) -> str:
    # repr() as the fallback only for values that did not come from JSON (a body handed over
    # already decoded); JSON values never reach it.
    return json.dumps(value, ensure_ascii=True, separators=(",", ":"), sort_keys=True, default=repr)


class ClaimState(enum.Enum):
    """What :meth:`DedupeStore.claim` found."""

    #: The caller owns the key now and must mark it done or release it.
    CLAIMED = "claimed"
    #: A delivery of this event was handled within the ttl: this one is a duplicate.
    DONE = "done"
    #: Another caller holds an unexpired claim: the event is running elsewhere right now.
    BUSY = "busy"


@dataclass(frozen=True, slots=True)
class Claim:
    """The answer of :meth:`DedupeStore.claim`; pass it back to ``done`` or ``release``.

    :param key: the key that was claimed.
    :param state: what the store found.
    :param token: proof of ownership, set only when ``state`` is ``CLAIMED``; ``done`` and
        ``release`` touch the key only while it still holds this token.
    :param expires_in: seconds the entry found still lives (the lease left of a ``BUSY`` claim,
        the ttl left of a ``DONE`` key); ``0.0`` for a new claim.
    """

    key: str
    state: ClaimState
    token: str | None = None
    expires_in: float = 0.0


@t.runtime_checkable
class DedupeStore(t.Protocol):
    """Where de-duplication keys live; every method is atomic with respect to the others.

    A method that cannot reach its storage raises; the receiver then refuses the request with
    :class:`~yalgaar_receiver.DispatchUnavailableError` rather than guess.
    """

    def claim(self, key: str) -> Claim:
        """Take ``key`` for the lease time unless it is done or claimed by someone else."""
        ...

    def done(self, claim: Claim) -> bool:
        """Mark a claimed key done for the ttl.

        Return ``False`` when the claim had expired first (the lease was shorter than the
        handlers took); the key is still marked done unless another caller claimed it since.
        """
        ...

    def release(self, claim: Claim) -> bool:
        """Forget a claimed key so the next delivery runs the event again.

        Return ``False`` when the claim had expired or was taken over; nothing is changed then.
        """
        ...


@t.runtime_checkable
class Attempts(t.Protocol):
    """Counts the failed attempts of an event, so that one that fails every time is given up.

    Both stores of this module count (a store shared by several workers counts for all of
    them); a receiver whose store does not count keeps the count in its process
    (:class:`MemoryAttempts`).
    """

    def attempt(self, key: str) -> int:
        """Count one more failed attempt of ``key``; return how many there were within the
        store's ttl, this one included."""
        ...


class MemoryAttempts:
    """Failed attempts counted in this process's memory, bounded and forgotten after ``ttl``.

    :param ttl: seconds an attempt is remembered after the last one.
    :param max_entries: the most keys kept; past it the oldest is forgotten.
    :param timer: the clock, in seconds; monotonic by default, replaceable in tests.
    """

    def __init__(
        self,
        ttl: float = DEFAULT_TTL,
        *,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        timer: t.Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = settings.positive_number(ttl, "ttl")
        self.max_entries = settings.positive_int(max_entries, "max_entries")
        self._timer = timer
        self._lock = threading.Lock()
        self._counts: collections.OrderedDict[str, tuple[int, float]] = collections.OrderedDict()

    def attempt(self, key: str) -> int:
        with self._lock:
            now = self._timer()
            count, expires = self._counts.pop(key, (0, now))
            count = count + 1 if expires > now else 1
            self._counts[key] = (count, now + self.ttl)
            while len(self._counts) > self.max_entries:
                self._counts.popitem(last=False)
            return count


def _new_token() -> str:
    # 128 random bits: another caller cannot guess or collide with it, and as hex it can never
    # equal the "done" marker the Redis store writes.
    return secrets.token_hex(16)


# -- in memory ---------------------------------------------------------------------------------


@dataclass(slots=True)
class _Entry:
    token: str | None  # None once done
    expires: float


class MemoryDedupeStore:
    """Keys in this process's memory: the embedded default, for one process.

    Thread-safe and bounded: past ``max_entries`` keys the oldest one (by last change) is
    dropped, even before its ttl, so memory stays flat under any load; an event older than that
    would run again if it came back. Keys are not shared with other processes: with several
    workers (gunicorn ``-w 4``) or machines, use :class:`RedisDedupeStore`.

    :param ttl: seconds a done key answers "duplicate".
    :param max_entries: the most keys kept at once.
    :param lease: seconds a claim lasts if it is never finished.
    :param timer: the clock, in seconds; monotonic by default, replaceable in tests.
    """

    def __init__(
        self,
        ttl: float = DEFAULT_TTL,
        *,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        lease: float = DEFAULT_LEASE,
        timer: t.Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = settings.positive_number(ttl, "ttl")
        self.lease = settings.positive_number(lease, "lease")
        self.max_entries = settings.positive_int(max_entries, "max_entries")
        self._timer = timer
        self._lock = threading.Lock()
        self._attempts = MemoryAttempts(self.ttl, max_entries=self.max_entries, timer=timer)
        # Insertion order is the order of last change: every write moves its key to the end,
        # so the first entry is always the one to evict.
        self._entries: collections.OrderedDict[str, _Entry] = collections.OrderedDict()

    def __repr__(self) -> str:
        return f"<MemoryDedupeStore keys={len(self)} ttl={self.ttl:g} lease={self.lease:g}>"

    def __len__(self) -> int:
        """The number of keys held, expired ones that were not yet purged included."""
        return len(self._entries)

    def __bool__(self) -> bool:
        # A store is there whether or not it holds keys yet: without this, __len__ would make
        # an empty store falsy, and ``if store:`` would take a fresh one for none.
        return True

    def attempt(self, key: str) -> int:
        """Count one more failed attempt of ``key`` (see :class:`Attempts`), for ``ttl``."""
        return self._attempts.attempt(key)

    def claim(self, key: str) -> Claim:
        with self._lock:
            now = self._timer()
            entry = self._entries.get(key)
            if entry is not None and entry.expires > now:
                state = ClaimState.DONE if entry.token is None else ClaimState.BUSY
                return Claim(key, state, expires_in=entry.expires - now)
            token = _new_token()
            self._put(key, _Entry(token, now + self.lease), now)
            return Claim(key, ClaimState.CLAIMED, token)

    def done(self, claim: Claim) -> bool:
        if claim.token is None:
            return False
        with self._lock:
            now = self._timer()
            entry = self._entries.get(claim.key)
            owned = _owns(entry, claim, now)
            if owned or entry is None or entry.expires <= now:
                self._put(claim.key, _Entry(None, now + self.ttl), now)
            return owned

    def release(self, claim: Claim) -> bool:
        with self._lock:
            entry = self._entries.get(claim.key)
            if not _owns(entry, claim, self._timer()):
                return False
            del self._entries[claim.key]
            return True

    def _put(self, key: str, entry: _Entry, now: float) -> None:
        self._entries[key] = entry
        self._entries.move_to_end(key)
        # Expired entries at the front go first; then, if still full, the oldest live ones.
        while self._entries:
            oldest = next(iter(self._entries.values()))
            if oldest.expires > now and len(self._entries) <= self.max_entries:
                break
            self._entries.popitem(last=False)


def _owns(entry: _Entry | None, claim: Claim, now: float) -> bool:
    return (
        entry is not None
        and claim.token is not None
        and entry.token == claim.token
        and entry.expires > now
    )


# -- in Redis ----------------------------------------------------------------------------------


class _Script(t.Protocol):
    def __call__(self, keys: t.Sequence[str] = ..., args: t.Sequence[str | int] = ...) -> t.Any: ...


# Every script touches one key, so it runs on Redis Cluster too. Redis freezes the clock for
# the length of a script, so a key cannot expire between two of its commands. Scripts return
# only integers, which read the same whether or not the client decodes responses.

# ARGV: token, lease in ms. Returns {1, 0} claimed, {2, pttl} done, {3, pttl} busy.
_CLAIM: t.Final = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
    return {1, 0}
end
local pttl = redis.call('PTTL', KEYS[1])
if redis.call('GET', KEYS[1]) == 'done' then
    return {2, pttl}
end
return {3, pttl}
"""

# ARGV: token, ttl in ms. Returns 1 when the caller still owned the claim. A key whose claim
# expired and that nobody claimed since is marked done all the same: the handlers did succeed.
_DONE: t.Final = """
local value = redis.call('GET', KEYS[1])
if value == ARGV[1] or value == false then
    redis.call('SET', KEYS[1], 'done', 'PX', ARGV[2])
end
if value == ARGV[1] then
    return 1
end
return 0
"""

# ARGV: ttl in ms. Counts one more attempt; the count lives for the ttl after the last one.
_ATTEMPT: t.Final = """
local count = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return count
"""

# ARGV: token. Deletes the key only while it holds the caller's token.
_RELEASE: t.Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


class RedisDedupeStore:
    """Keys in Redis, shared by every process and machine that uses the same server and prefix.

    A claim is ``SET key token NX PX lease``; done and release are Lua scripts that change the
    key only while it still holds the caller's token, so a slow caller whose lease ran out never
    releases a claim another caller has taken since. Redis expires keys itself (``PX``), so
    nothing needs cleaning up. Errors of the client (Redis down, a timeout) propagate; see
    :class:`DedupeStore`.

    :param redis_client: a ``redis.Redis`` (or ``RedisCluster``) built by the application; give
        it ``socket_timeout`` and ``socket_connect_timeout`` so that an unreachable server fails
        fast instead of holding the request.
    :param ttl: seconds a done key answers "duplicate".
    :param prefix: prepended to every key, to share one Redis database with other data.
    :param lease: seconds a claim lasts if it is never finished.
    """

    def __init__(
        self,
        redis_client: RedisClient,
        ttl: float = DEFAULT_TTL,
        *,
        prefix: str = "yalgaar:dedupe:",
        lease: float = DEFAULT_LEASE,
    ) -> None:
        self.ttl = settings.positive_number(ttl, "ttl")
        self.lease = settings.positive_number(lease, "lease")
        if not isinstance(prefix, str):
            raise ConfigurationError(f"prefix must be a string, not {prefix!r}.")
        self.prefix = prefix
        self.redis = redis_client
        # register_script sends nothing yet: the first call loads the script (EVALSHA, then
        # EVAL when the server does not know it, for example after a restart).
        self._claim: _Script = redis_client.register_script(_CLAIM)
        self._done: _Script = redis_client.register_script(_DONE)
        self._release: _Script = redis_client.register_script(_RELEASE)
        self._attempt: _Script = redis_client.register_script(_ATTEMPT)

    def __repr__(self) -> str:
        return f"<RedisDedupeStore prefix={self.prefix!r} ttl={self.ttl:g} lease={self.lease:g}>"

    def claim(self, key: str) -> Claim:
        token = _new_token()
        status, pttl = self._claim(keys=[self.prefix + key], args=[token, _ms(self.lease)])
        if int(status) == 1:
            return Claim(key, ClaimState.CLAIMED, token)
        state = ClaimState.DONE if int(status) == 2 else ClaimState.BUSY
        return Claim(key, state, expires_in=max(int(pttl), 0) / 1000)

    def done(self, claim: Claim) -> bool:
        if claim.token is None:
            return False
        owned = self._done(keys=[self.prefix + claim.key], args=[claim.token, _ms(self.ttl)])
        return int(owned) == 1

    def release(self, claim: Claim) -> bool:
        if claim.token is None:
            return False
        return int(self._release(keys=[self.prefix + claim.key], args=[claim.token])) == 1

    def attempt(self, key: str) -> int:
        """Count one more failed attempt of ``key`` (see :class:`Attempts`), for ``ttl``; the
        count lives under ``<prefix>attempts:<key>``."""
        return int(self._attempt(keys=[f"{self.prefix}attempts:{key}"], args=[_ms(self.ttl)]))


def _ms(seconds: float) -> int:
    # PX takes whole milliseconds and refuses 0.
    return max(1, round(seconds * 1000))
