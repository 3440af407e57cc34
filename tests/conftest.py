"""Fixtures shared by the test modules: small, and each stops what it starts."""

from __future__ import annotations

import typing as t

import pytest

from .servers import RedisServer, start_redis


@pytest.fixture
def redis_server() -> t.Iterator[RedisServer]:
    """A real ``redis-server`` on a free 127.0.0.1 port, for one test."""
    yield from start_redis()
