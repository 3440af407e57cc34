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

Both stores also take a whole batch at once (:class:`BatchDedupeStore`): the receiver claims the
keys of a request's events together and settles them together, so that a 200-item envelope costs
two round trips to a shared store, not four hundred; each event keeps its own outcome. A store of
the application's own needs only the three methods of :class:`DedupeStore`; the receiver then
claims and settles each event as it runs.

Two stores: :class:`MemoryDedupeStore` for one process, :class:`RedisDedupeStore` shared by every
process and machine that talks to one Redis (or Redis Cluster). The Redis store takes a client
object the caller built, so ``redis`` is needed only by whoever builds it
(``pip install yalgaar-receiver[redis]``).

Imports: the standard library and the core below the receiver.
"""

from __future__ import annotations

import collections
import enum
import hashlib
import json
import logging
import secrets
import threading
import time
import typing as t
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from .. import settings
from .._fork import reset_after_fork
from .._redis import RedisClient, is_cluster
from ..events import Event, MessageEvent, PresenceAction, PresenceEvent, UnknownEvent
from ..exceptions import ConfigurationError

__all__ = [
    "Attempts",
    "BatchDedupeStore",
    "Claim",
    "ClaimState",
    "DedupeStore",
    "KeyFunction",
    "LeaseKeeper",
    "MemoryAttempts",
    "MemoryDedupeStore",
    "RedisDedupeStore",
    "attempt_key",
    "event_key",
]

logger = logging.getLogger("yalgaar_receiver.dedupe")

#: Turns an event into its de-duplication key; ``None`` means "never de-duplicate this event".
KeyFunction = t.Callable[[Event], str | None]

#: Seconds a key stays "done" (a later copy is a duplicate) unless the store is told otherwise.
DEFAULT_TTL: t.Final = 600.0
#: Seconds a claim lasts when it is neither marked done nor released (a crashed process).
DEFAULT_LEASE: t.Final = 60.0
#: The longest a :class:`LeaseKeeper` renews one claim: an hour.
DEFAULT_MAX_HOLD: t.Final = 3600.0
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
class BatchDedupeStore(DedupeStore, t.Protocol):
    """A store that also takes the keys of a batch at once, each with its own outcome."""

    def claim_many(self, keys: t.Sequence[str]) -> list[Claim]:
        """:meth:`~DedupeStore.claim` each key, in order, in one go."""
        ...

    def settle_many(self, outcomes: t.Sequence[tuple[Claim, bool]]) -> list[bool]:
        """Mark each claim done (``True``) or release it (``False``), in one go; for each,
        what :meth:`~DedupeStore.done` or :meth:`~DedupeStore.release` would return."""
        ...

    def renew_many(self, claims: t.Sequence[Claim]) -> list[bool]:
        """Give each claim still owned a full lease again, from now; for each, whether it was
        still owned (``False``: it expired, or another caller took it)."""
        ...


class LeaseKeeper:
    """Renews the claims of running events, so that a handler slower than the lease keeps its
    claim and a resend meanwhile is refused (busy) rather than run a second time.

    One daemon thread per keeper, started at the first claim held, renews every claim held
    each third of the store's lease, all in one :meth:`BatchDedupeStore.renew_many` call; a
    claim is dropped when its event is settled. A process that dies takes the thread with it,
    so its claims still expire after the lease. A child forked from the process (gunicorn
    ``--preload``, a Celery pool) gets a fresh lock and none of the parent's claims, and starts a
    thread of its own when it first holds one.

    :param store: the store whose claims it renews.
    :param interval: seconds between renewals; a third of the store's lease by default.
    :param max_hold: the longest a claim is renewed, so that one whose event never settles
        (a queue dropped at shutdown) is not kept alive as long as the process lives.
    :param timer: the clock for ``max_hold``, in seconds; monotonic by default.
    """

    def __init__(
        self,
        store: BatchDedupeStore,
        interval: float | None = None,
        *,
        max_hold: float = DEFAULT_MAX_HOLD,
        timer: t.Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        lease = float(getattr(store, "lease", DEFAULT_LEASE))
        self.interval = (
            lease / 3 if interval is None else settings.positive_number(interval, "interval")
        )
        self.max_hold = settings.positive_number(max_hold, "max_hold")
        self._timer = timer
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._held: dict[tuple[str, str], tuple[Claim, float]] = {}  # claim, since when
        self._thread: threading.Thread | None = None
        self._closed = False
        reset_after_fork(self._after_fork)

    def __repr__(self) -> str:
        return f"<LeaseKeeper held={len(self._held)} interval={self.interval:g}>"

    def hold(self, claims: t.Iterable[Claim]) -> None:
        """Renew these claims until they are dropped."""
        with self._lock:
            now = self._timer()
            for claim in claims:
                if claim.token is not None and claim.state is ClaimState.CLAIMED:
                    self._held[claim.key, claim.token] = (claim, now)
            if self._held and not self._closed:
                self._start()

    def drop(self, claims: t.Iterable[Claim]) -> None:
        """Stop renewing these claims (their events were settled)."""
        with self._lock:
            for claim in claims:
                if claim.token is not None:
                    self._held.pop((claim.key, claim.token), None)
            if not self._held:
                self._wake.notify_all()  # the thread ends; the next hold starts one again

    def close(self) -> None:
        """Stop the thread; the claims held are left to expire."""
        with self._lock:
            self._closed = True
            self._wake.notify_all()
            thread = self._thread
        if thread is not None and thread.is_alive() and thread is not threading.current_thread():
            thread.join(timeout=5)

    def renew(self) -> None:
        """Renew every claim held now (the thread does it each interval)."""
        with self._lock:
            now = self._timer()
            old = [c for c, since in self._held.values() if now - since > self.max_hold]
            claims = [c for c, since in self._held.values() if now - since <= self.max_hold]
        if old:
            logger.warning(
                "%d claim(s) held longer than max_hold=%gs (the first %s) are left to expire",
                len(old),
                self.max_hold,
                old[0].key,
            )
            self.drop(old)
        if not claims:
            return
        try:
            owned = self.store.renew_many(claims)
        except Exception:
            logger.warning("Could not renew %d claim(s); retrying", len(claims), exc_info=True)
            return
        with self._lock:
            # A claim dropped while the renewal was on its way was settled, not lost: its
            # event ended (and its key is done or free), so the store no longer holds it.
            lost = [
                claim
                for claim, kept in zip(claims, owned, strict=True)
                if not kept and (claim.key, claim.token) in self._held
            ]
        if lost:
            logger.warning(
                "%d claim(s) expired or were taken while their events ran (the first %s): "
                "another delivery may run them",
                len(lost),
                lost[0].key,
            )
            self.drop(lost)

    def _after_fork(self) -> None:
        # The parent's thread is gone, its lock may have been held at the fork, and its claims
        # are its events', not the child's.
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._held = {}
        self._thread = None

    def _start(self) -> None:
        # Under the lock.
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="yalgaar-lease", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            with self._lock:
                self._wake.wait(self.interval)
                if self._closed:
                    return
                if not self._held:
                    self._thread = None  # started again by the next hold
                    return
            self.renew()


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
        return self.claim_many((key,))[0]

    def done(self, claim: Claim) -> bool:
        return self.settle_many(((claim, True),))[0]

    def release(self, claim: Claim) -> bool:
        return self.settle_many(((claim, False),))[0]

    def claim_many(self, keys: t.Sequence[str]) -> list[Claim]:
        with self._lock:
            now = self._timer()
            return [self._claim(key, now) for key in keys]

    def settle_many(self, outcomes: t.Sequence[tuple[Claim, bool]]) -> list[bool]:
        with self._lock:
            now = self._timer()
            return [self._done(c, now) if ok else self._release(c, now) for c, ok in outcomes]

    def renew_many(self, claims: t.Sequence[Claim]) -> list[bool]:
        with self._lock:
            now = self._timer()
            owned = []
            for claim in claims:
                entry = self._entries.get(claim.key)
                kept = entry is not None and _owns(entry, claim, now)
                if entry is not None and kept:
                    entry.expires = now + self.lease
                owned.append(kept)
            return owned

    def _claim(self, key: str, now: float) -> Claim:
        entry = self._entries.get(key)
        if entry is not None and entry.expires > now:
            state = ClaimState.DONE if entry.token is None else ClaimState.BUSY
            return Claim(key, state, expires_in=entry.expires - now)
        token = _new_token()
        self._put(key, _Entry(token, now + self.lease), now)
        return Claim(key, ClaimState.CLAIMED, token)

    def _done(self, claim: Claim, now: float) -> bool:
        if claim.token is None:
            return False
        entry = self._entries.get(claim.key)
        owned = _owns(entry, claim, now)
        if owned or entry is None or entry.expires <= now:
            self._put(claim.key, _Entry(None, now + self.ttl), now)
        return owned

    def _release(self, claim: Claim, now: float) -> bool:
        if not _owns(self._entries.get(claim.key), claim, now):
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

# ARGV: token, lease in ms. Gives the claim a full lease again while it holds the token.
_RENEW: t.Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
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
        reply = self._claim(keys=[self.prefix + key], args=[token, _ms(self.lease)])
        return _claimed(key, token, reply)

    def done(self, claim: Claim) -> bool:
        if claim.token is None:
            return False
        owned = self._done(keys=[self.prefix + claim.key], args=[claim.token, _ms(self.ttl)])
        return int(owned) == 1

    def release(self, claim: Claim) -> bool:
        if claim.token is None:
            return False
        return int(self._release(keys=[self.prefix + claim.key], args=[claim.token])) == 1

    def claim_many(self, keys: t.Sequence[str]) -> list[Claim]:
        """The claim script for every key in one pipeline: one round trip to a server, one per
        node on a cluster (each call touches one key, so keys spread over every slot)."""
        tokens = [_new_token() for _ in keys]
        lease = _ms(self.lease)
        calls = [
            (_CLAIM, self.prefix + key, (token, lease))
            for key, token in zip(keys, tokens, strict=True)
        ]
        replies = self._pipelined(calls)
        return [_claimed(k, token, r) for k, token, r in zip(keys, tokens, replies, strict=True)]

    def settle_many(self, outcomes: t.Sequence[tuple[Claim, bool]]) -> list[bool]:
        """The done or release script of every claim in one pipeline, like :meth:`claim_many`."""
        ttl = _ms(self.ttl)
        calls = [
            (_DONE, self.prefix + c.key, (c.token, ttl)) if ok
            else (_RELEASE, self.prefix + c.key, (c.token,))
            for c, ok in outcomes
            if c.token is not None
        ]  # fmt: skip
        replies = iter(self._pipelined(calls))
        return [c.token is not None and int(next(replies)) == 1 for c, _ in outcomes]

    def renew_many(self, claims: t.Sequence[Claim]) -> list[bool]:
        """The renew script of every claim in one pipeline, like :meth:`claim_many`."""
        lease = _ms(self.lease)
        calls = [
            (_RENEW, self.prefix + c.key, (c.token, lease)) for c in claims if c.token is not None
        ]
        replies = iter(self._pipelined(calls))
        return [c.token is not None and int(next(replies)) == 1 for c in claims]

    def _pipelined(self, calls: t.Sequence[tuple[str, str, tuple[t.Any, ...]]]) -> list[t.Any]:
        # EVAL with the text, not EVALSHA: a pipeline has no way to load a script the server
        # forgot (a restart) without another round trip, and the server caches compiled
        # scripts by their hash anyway; the cost is the text's bytes on the wire.
        if not calls:
            return []
        # A cluster pipeline sends one batch per node; told each call's node, it does not ask a
        # node for the keys of every EVAL first (COMMAND GETKEYS, a round trip per call).
        cluster: t.Any = self.redis if is_cluster(self.redis) else None
        node_of = None if cluster is None else cluster.get_node_from_key
        pipe = self.redis.pipeline(transaction=False)
        for script, key, args in calls:
            options = {} if node_of is None else {"target_nodes": node_of(key)}
            # execute_command, since a cluster pipeline's eval() is not the command.
            pipe.execute_command("EVAL", script, 1, key, *args, **options)
        return list(pipe.execute())

    def attempt(self, key: str) -> int:
        """Count one more failed attempt of ``key`` (see :class:`Attempts`), for ``ttl``; the
        count lives under ``<prefix>attempts:<key>``."""
        return int(self._attempt(keys=[f"{self.prefix}attempts:{key}"], args=[_ms(self.ttl)]))


def _claimed(key: str, token: str, reply: t.Sequence[t.Any]) -> Claim:
    """The :class:`Claim` of the claim script's reply ``{status, pttl}``."""
    status, pttl = int(reply[0]), int(reply[1])
    if status == 1:
        return Claim(key, ClaimState.CLAIMED, token)
    state = ClaimState.DONE if status == 2 else ClaimState.BUSY
    return Claim(key, state, expires_in=max(pttl, 0) / 1000)


def _ms(seconds: float) -> int:
    # PX takes whole milliseconds and refuses 0.
    return max(1, round(seconds * 1000))
