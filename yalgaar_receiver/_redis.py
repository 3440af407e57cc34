"""Internal: the part of a redis-py client that the Redis-backed classes use.

Every Redis-backed class takes a client object that the application built (``redis.Redis``, or
``redis.RedisCluster``), so no module of the package imports ``redis``; this protocol is what they
may call on it, written once.

Imports: the standard library.
"""

from __future__ import annotations

import typing as t

__all__ = ["RedisClient", "text"]


class RedisClient(t.Protocol):
    """The commands used on a redis-py client; ``decode_responses`` may be either."""

    def register_script(self, script: str) -> t.Any: ...
    def rpush(self, name: str, *values: str) -> t.Any: ...
    def lrange(self, name: str, start: int, end: int) -> t.Any: ...
    def lrem(self, name: str, count: int, value: str) -> t.Any: ...
    def zrange(self, name: str, start: int, end: int, *, withscores: bool) -> t.Any: ...
    def smembers(self, name: str) -> t.Any: ...
    def scard(self, name: str) -> t.Any: ...
    def hgetall(self, name: str) -> t.Any: ...


def text(value: bytes | str) -> str:
    """A reply as text, whether or not the client decodes responses."""
    return value.decode("utf-8") if isinstance(value, bytes) else value
