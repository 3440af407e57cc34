"""Internal: the part of a redis-py client that the Redis-backed classes use.

Every Redis-backed class takes a client object that the application built (``redis.Redis``, or
``redis.RedisCluster``), so no module of the package imports ``redis``; this protocol is what they
may call on it, written once, with the one rule about key names that depends on the client.

Imports: the standard library.
"""

from __future__ import annotations

import typing as t

__all__ = ["RedisClient", "is_cluster", "slot_prefix", "text"]


class RedisClient(t.Protocol):
    """The commands used on a redis-py client; ``decode_responses`` may be either."""

    def register_script(self, script: str) -> t.Any: ...
    def pipeline(self, transaction: bool = ...) -> t.Any: ...
    def rpush(self, name: str, *values: str) -> t.Any: ...
    def lrange(self, name: str, start: int, end: int) -> t.Any: ...
    def lrem(self, name: str, count: int, value: str) -> t.Any: ...
    def zrange(self, name: str, start: int, end: int, *, withscores: bool) -> t.Any: ...
    def smembers(self, name: str) -> t.Any: ...
    def scard(self, name: str) -> t.Any: ...
    def hgetall(self, name: str) -> t.Any: ...
    def get(self, name: str) -> t.Any: ...
    def set(self, name: str, value: str, *, nx: bool = False) -> t.Any: ...
    def delete(self, *names: str) -> t.Any: ...


def text(value: bytes | str) -> str:
    """A reply as text, whether or not the client decodes responses."""
    return value.decode("utf-8") if isinstance(value, bytes) else value


def is_cluster(client: object) -> bool:
    """Whether ``client`` talks to a Redis Cluster (redis-py's ``RedisCluster`` maps keys to
    slots; a plain ``Redis`` has no such method)."""
    return callable(getattr(client, "keyslot", None))


def slot_prefix(client: object, prefix: str) -> str:
    """The prefix a store whose scripts touch several of its keys puts before each of them.

    Redis Cluster runs a script on the node of its declared keys and lets it touch only keys of
    one slot, so on a cluster every key of such a store must share a slot: the prefix goes in
    braces (a hash tag: ``{yalgaar:presence:}due``) unless it holds one already. Stores with
    other prefixes (one per Yalgaar app) land on other slots, so a fleet of apps spreads over
    the nodes. On one server, or a primary with replicas, the prefix is used as given.
    """
    if not is_cluster(client):
        return prefix
    start = prefix.find("{")
    if start >= 0 and prefix.find("}", start + 2) > start:
        return prefix  # a non-empty hash tag already: the user chose the slot
    return f"{{{prefix}}}"
