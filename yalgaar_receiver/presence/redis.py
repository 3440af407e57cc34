"""``RedisPresenceStore``: presence state in Redis, shared by every process that uses it.

The rules are those of :class:`~yalgaar_receiver.presence.memory.MemoryPresenceStore`, written in
Lua (``lua/common.lua``, ``lua/apply.lua``, ``lua/sweep.lua`` beside this module) so that Redis
runs each call atomically; ``lua/counts.lua`` counts channels and members in one call.

Imports: the standard library and the presence model; the application builds the Redis client.
"""

from __future__ import annotations

import typing as t
from importlib import resources

from .. import settings
from .._redis import RedisClient, slot_prefix, text
from .model import ChangeKind, PresenceChange, PresenceRules, PresenceUpdate

__all__ = ["RedisPresenceStore"]


def _lua(name: str) -> str:
    return resources.files(__package__).joinpath("lua").joinpath(name).read_text("utf-8")


# apply and sweep share the rules in common.lua; counts only reads.
_LUA_APPLY: t.Final = _lua("common.lua") + _lua("apply.lua")
_LUA_SWEEP: t.Final = _lua("common.lua") + _lua("sweep.lua")
_LUA_COUNTS: t.Final = _lua("counts.lua")


class RedisPresenceStore:
    """Presence state in Redis, shared by every process that uses the same server and prefix.

    Each call is one Lua script, run atomically by the server (:meth:`apply_many` applies a
    whole envelope's updates in one), so two app servers applying events
    for the same channel at once still produce each transition exactly once, and a due departure
    is confirmed by whichever process sweeps first.

    On Redis Cluster (a ``redis.RedisCluster`` client) every key of the store shares one hash
    slot, since a script may touch only one slot: the prefix is put in braces
    (``{yalgaar:presence:}members:room``) unless it holds a hash tag already. One store (one
    Yalgaar app) then lives on one node, and the stores of many apps spread over the nodes;
    ``docs/scaling.md`` has the layout.

    :param redis_client: a ``redis.Redis`` (or compatible) client; ``decode_responses`` may be
        either.
    :param prefix: the start of every key this store writes; give each tracker its own.
        :attr:`key_prefix` is what the keys really start with (the same, but on a cluster).
    :param sweep_limit: the most due entries one script settles, so that one call never holds
        the server for long; :meth:`sweep` repeats until the backlog is gone.
    :param apply_limit: the most updates one script applies; :meth:`apply_many` sends more in
        several calls (each atomic on its own).
    """

    def __init__(
        self,
        redis_client: RedisClient,
        *,
        prefix: str = "yalgaar:presence:",
        sweep_limit: int = 200,
        apply_limit: int = 500,
    ) -> None:
        self.client = redis_client
        self.prefix = prefix
        #: What every key starts with: ``prefix``, in braces on a Redis Cluster.
        self.key_prefix = slot_prefix(redis_client, prefix)
        self.sweep_limit = settings.positive_int(sweep_limit, "sweep_limit")
        self.apply_limit = settings.positive_int(apply_limit, "apply_limit")
        self._apply_script = redis_client.register_script(_LUA_APPLY)
        self._sweep_script = redis_client.register_script(_LUA_SWEEP)
        self._counts_script = redis_client.register_script(_LUA_COUNTS)
        self._due = [self.key_prefix + "due"]  # the key every script declares

    def __repr__(self) -> str:
        return f"<RedisPresenceStore prefix={self.prefix!r}>"

    def apply(
        self, update: PresenceUpdate, now: float, rules: PresenceRules
    ) -> list[PresenceChange]:
        return self.apply_many((update,), now, rules)

    def apply_many(
        self, updates: t.Sequence[PresenceUpdate], now: float, rules: PresenceRules
    ) -> list[PresenceChange]:
        grace = rules.grace_seconds
        ttl = rules.member_ttl
        deadlines = [repr(now + grace) if grace > 0 else "", "" if ttl is None else repr(now + ttl)]
        changes: list[PresenceChange] = []
        # One script per apply_limit updates: a whole envelope in one round trip, and never a
        # request of 10,000 items holding the server in one script.
        for start in range(0, len(updates), self.apply_limit):
            args = [*self._common(now, rules), *deadlines]
            for update in updates[start : start + self.apply_limit]:
                args += (
                    update.action,
                    update.channel,
                    update.uuid,
                    "" if update.timestamp is None else repr(float(update.timestamp)),
                )
            changes += _changes(self._apply_script(keys=self._due, args=args))
        return changes

    def sweep(self, now: float, rules: PresenceRules) -> list[PresenceChange]:
        changes: list[PresenceChange] = []
        while True:
            reply = self._sweep_script(keys=self._due, args=self._common(now, rules))
            changes.extend(_changes(reply))
            if int(text(reply[0])) < self.sweep_limit:
                return changes

    def next_deadline(self) -> float | None:
        first = self.client.zrange(self._due[0], 0, 0, withscores=True)
        return float(first[0][1]) if first else None

    def members(self, channel: str) -> frozenset[str]:
        return frozenset(text(m) for m in self.client.smembers(self._members_key(channel)))

    def occupancy(self, channel: str) -> int:
        return int(self.client.scard(self._members_key(channel)))

    def departing(self, channel: str) -> frozenset[str]:
        # "11:..." is present and pending; see the layout above _LUA_COMMON.
        states = self.client.hgetall(f"{self.key_prefix}state:{channel}")
        return frozenset(text(u) for u, state in states.items() if text(state)[:2] == "11")

    def channels(self) -> frozenset[str]:
        return frozenset(text(c) for c in self.client.smembers(self.key_prefix + "channels"))

    def counts(self) -> tuple[int, int]:
        channels, members = self._counts_script(
            keys=[self.key_prefix + "channels"], args=[self.key_prefix]
        )
        return int(channels), int(members)

    def mark_stale(self, when: float) -> None:
        self.client.set(self.key_prefix + "stale", repr(when), nx=True)

    def stale_since(self) -> float | None:
        found = self.client.get(self.key_prefix + "stale")
        return None if found is None else float(text(found))

    def clear_stale(self) -> None:
        self.client.delete(self.key_prefix + "stale")

    def _members_key(self, channel: str) -> str:
        return f"{self.key_prefix}members:{channel}"

    def _common(self, now: float, rules: PresenceRules) -> list[str]:
        return [self.key_prefix, repr(now), repr(now + rules.watermark_ttl), str(self.sweep_limit)]


def _changes(reply: t.Sequence[bytes | str]) -> list[PresenceChange]:
    items = [text(v) for v in reply[1:]]
    return [
        PresenceChange(kind=ChangeKind(items[i]), channel=items[i + 1], uuid=items[i + 2])
        for i in range(0, len(items), 3)
    ]
