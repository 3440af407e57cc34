"""Probable loss at the sender: an envelope as full as Yalgaar makes them (200 items) is the
signature of events the receiver will never see."""

from __future__ import annotations

import logging
import typing as t
from datetime import datetime, timezone

import pytest
import redis

from yalgaar_receiver import ConfigurationError, Receiver, signals
from yalgaar_receiver.presence import MemoryPresenceStore, PresenceTracker, RedisPresenceStore
from yalgaar_receiver.testing import bind, message, message_envelope, presence_envelope

from ..servers import RedisServer

KEY = "ck-0123456789abcdef"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def presence(count: int, channel: str = "stadium") -> bytes:
    items = [bind(channel if n % 4 else "lobby", f"u{n}") for n in range(count)]
    return presence_envelope(*items, client_key=KEY).to_bytes()


def losses(receiver: Receiver, body: bytes) -> list[dict[str, t.Any]]:
    seen: list[dict[str, t.Any]] = []
    with signals.possible_loss.connected_to(lambda s, **kw: seen.append(kw), sender=receiver):
        receiver.handle(body)
    return seen


def test_200_items_is_a_possible_loss_and_199_is_not() -> None:
    receiver = Receiver([KEY])
    assert losses(receiver, presence(199)) == []
    [loss] = losses(receiver, presence(200))
    assert loss["source"] == "presence" and loss["items"] == 200
    assert loss["channels"] == {"stadium": 150, "lobby": 50}
    assert isinstance(loss["at"], datetime) and loss["at"].tzinfo is timezone.utc
    messages = message_envelope(*(message("chat", "u", "hi") for _ in range(250)), client_key=KEY)
    [more] = losses(receiver, messages.to_bytes())
    assert (more["source"], more["items"]) == ("message", 250)


def test_the_cap_is_a_setting() -> None:
    assert losses(Receiver([KEY], sender_cap=50), presence(50)) != []
    assert losses(Receiver([KEY], sender_cap=None), presence(500)) == []
    with pytest.raises(ConfigurationError, match="sender_cap must be a positive integer"):
        Receiver([KEY], sender_cap=0)


def test_the_warning_names_the_fix_at_most_once_a_minute(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    receiver = Receiver([KEY], clock=clock)
    body = presence(200)
    for seconds in (0, 30, 59.9, 60, 61, 125):
        clock.now = 1000.0 + seconds
        assert len(losses(receiver, body)) == 1  # the signal every time
    warnings = [r for r in caplog.records if "probably dropped by the sender" in r.getMessage()]
    assert len(warnings) == 3  # at 0, 60 and 125
    assert all(r.levelno == logging.WARNING for r in warnings)
    text = warnings[0].getMessage()
    assert "Spread the publishers" in text and "ask Yalgaar for a higher cap" in text
    assert "'stadium' (150)" in text


def test_the_tracker_marks_its_state_stale(caplog: pytest.LogCaptureFixture) -> None:
    receiver = Receiver([KEY])
    with PresenceTracker(receiver, store=MemoryPresenceStore(), sweep_interval=None) as tracker:
        receiver.handle(presence(199))
        assert tracker.stale_since is None
        chat = message_envelope(*(message("c", "u", "x") for _ in range(200)), client_key=KEY)
        receiver.handle(chat.to_bytes())
        assert tracker.stale_since is None  # messages say nothing about presence
        receiver.handle(presence(200))
        first = tracker.stale_since
        assert first is not None and first.tzinfo is timezone.utc
        receiver.handle(presence(200))
        assert tracker.stale_since == first  # the earliest is kept
        assert tracker.counts() == (2, 200)
        tracker.clear_stale()
        assert tracker.stale_since is None
    assert "Presence state marked stale" in caplog.text


def test_the_stale_mark_and_counts_are_shared_through_redis(redis_server: RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.url)
    first, second = Receiver([KEY]), Receiver([KEY])
    stores = [RedisPresenceStore(client), RedisPresenceStore(client)]
    with (
        PresenceTracker(first, store=stores[0], sweep_interval=None) as one,
        PresenceTracker(second, store=stores[1], sweep_interval=None) as two,
    ):
        first.handle(presence(200))
        assert two.stale_since is not None and two.stale_since == one.stale_since
        second.handle(presence_envelope(bind("third", "x"), client_key=KEY).to_bytes())
        assert one.counts() == two.counts() == (3, 201)
        two.clear_stale()
        assert one.stale_since is None
    client.close()
