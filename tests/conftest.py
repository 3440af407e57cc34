"""Fixtures shared by the test modules: small, and each stops what it starts."""

from __future__ import annotations

import typing as t

import pytest

from .servers import RedisCluster, RedisServer, start_redis, start_redis_cluster


@pytest.fixture
def redis_server() -> t.Iterator[RedisServer]:
    """A real ``redis-server`` on a free 127.0.0.1 port, for one test."""
    yield from start_redis()


@pytest.fixture(scope="session")
def redis_cluster() -> t.Iterator[RedisCluster]:
    """A real 3-master Redis Cluster on 127.0.0.1, started once for the run (the tests that
    use it give their keys prefixes of their own)."""
    yield from start_redis_cluster()
