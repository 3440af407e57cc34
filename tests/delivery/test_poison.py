"""A poison message: an event whose handler fails every time is given up after max_attempts.

Given up means kept as a dead letter, sent on ``event_dead_lettered``, and acknowledged, so that a
sender that resends failed requests stops. The count holds across workers through the
de-duplication store, and in the process without one.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from flask import Flask

from yalgaar_receiver import Event, MessageEvent, Receiver, create_blueprint, signals
from yalgaar_receiver.delivery import (
    JsonLinesDeadLetterSink,
    MemoryDedupeStore,
    RedisDedupeStore,
    replay,
)
from yalgaar_receiver.testing import capture_events, message, message_envelope

from ..servers import RedisServer

KEY = "ck-0123456789abcdef"
AT = 1521609600


def body(*texts: str) -> bytes:
    items = [message("orders", f"u{n}", text, at=AT + n) for n, text in enumerate(texts)]
    return message_envelope(*items, client_key=KEY).to_bytes()


def strict_json_handler(receiver: Receiver) -> list[object]:
    """The README's handler as it was: ``event.json()`` raises on plain text, every time."""
    seen: list[object] = []

    @receiver.on_message
    def order(event: MessageEvent) -> None:
        seen.append(event.json())

    return seen


def app_for(receiver: Receiver) -> Flask:
    app = Flask(__name__)
    blueprint = create_blueprint(receiver, allow_client_key_only=True)
    app.register_blueprint(blueprint, url_prefix="/yalgaar")
    return app


def test_an_event_that_always_fails_is_given_up_after_max_attempts(tmp_path: Path) -> None:
    sink = JsonLinesDeadLetterSink(tmp_path / "dead.jsonl", fsync=False)
    receiver = Receiver([KEY], max_attempts=3, dead_letters=sink)
    seen = strict_json_handler(receiver)
    client = app_for(receiver).test_client()
    request = body('{"id": 1}', "plain text")
    given_up: list[tuple[Event, int]] = []
    with signals.event_dead_lettered.connected_to(
        lambda sender, event, failures, attempts: given_up.append((event, attempts)),
        sender=receiver,
    ):
        answers = [client.post("/yalgaar/message", data=request) for _ in range(3)]
    assert [a.status_code for a in answers] == [500, 500, 200]
    assert answers[-1].json == {"accepted": 2, "rejected": [], "failed": 0, "dead_lettered": 1}
    # The good event ran each time; the bad one is the one given up, once.
    assert seen == [{"id": 1}] * 3
    [(event, attempts)] = given_up
    assert isinstance(event, MessageEvent) and event.message == "plain text" and attempts == 3
    [letter] = sink.entries()
    assert letter.attempts == 3 and letter.handler is not None and letter.handler.endswith("order")
    assert letter.load_event() == event
    # Replayed once the handler is fixed, it runs.
    fixed = Receiver([KEY])
    ran: list[str] = []
    fixed.on_message(lambda e: ran.append(e.message))
    assert len(replay(sink, fixed).succeeded) == 1 and ran == ["plain text"]


def test_without_a_sink_the_dead_letter_is_logged_whole(
    caplog: pytest.LogCaptureFixture,
) -> None:
    receiver = Receiver([KEY], max_attempts=1)
    strict_json_handler(receiver)
    with capture_events(receiver) as capture:
        outcome = receiver.handle(body("not json"))
    assert outcome.failed == () and len(outcome.dead_lettered) == 1
    assert capture.dead_letters == list(outcome.dead_lettered)
    logged = [r.getMessage() for r in caplog.records if "no sink configured" in r.getMessage()]
    [line] = logged
    assert json.loads(line.split(": ", 1)[1])["event"]["message"] == "not json"


def test_none_never_gives_up() -> None:
    receiver = Receiver([KEY], max_attempts=None)
    strict_json_handler(receiver)
    for _ in range(8):
        outcome = receiver.handle(body("plain"))
        assert len(outcome.failed) == 1 and outcome.dead_lettered == ()


def test_with_a_store_the_count_is_the_store_s_and_a_resend_is_a_duplicate() -> None:
    store = MemoryDedupeStore()
    receiver = Receiver([KEY], max_attempts=2, dedupe=store)
    strict_json_handler(receiver)
    first, second = receiver.handle(body("plain")), receiver.handle(body("plain"))
    assert len(first.failed) == 1 and len(second.dead_lettered) == 1
    # Acknowledged: the sender should not send it again, and if it does nothing runs.
    third = receiver.handle(body("plain"))
    assert len(third.duplicates) == 1 and third.failed == () and third.dead_lettered == ()


def test_the_count_holds_across_workers_sharing_redis(redis_server: RedisServer) -> None:
    import redis

    def worker() -> Receiver:
        client = redis.Redis.from_url(redis_server.url, socket_timeout=5)
        receiver = Receiver([KEY], max_attempts=3, dedupe=RedisDedupeStore(client))
        strict_json_handler(receiver)
        return receiver

    a, b = worker(), worker()
    # The sender's retries land on whichever worker the balancer picks.
    outcomes = [r.handle(body("plain")) for r in (a, b, a)]
    assert [len(o.failed) for o in outcomes] == [1, 1, 0]
    assert [len(o.dead_lettered) for o in outcomes] == [0, 0, 1]
    assert len(b.handle(body("plain")).duplicates) == 1


def test_events_without_a_timestamp_are_counted_by_what_they_hold() -> None:
    receiver = Receiver([KEY], max_attempts=2)
    strict_json_handler(receiver)
    untimed = json.dumps(
        {
            "items": {
                "source": "Message",
                "clientKey": KEY,
                "data": [{"channel": "c", "message": "x"}],
            }
        }
    ).encode()
    assert len(receiver.handle(untimed).failed) == 1
    assert len(receiver.handle(untimed).dead_lettered) == 1


def test_a_background_dispatcher_keeps_its_own_dead_letters() -> None:
    from yalgaar_receiver import ThreadPoolDispatcher

    with ThreadPoolDispatcher(max_workers=1) as pool:
        receiver = Receiver([KEY], max_attempts=1, dispatcher=pool)
        strict_json_handler(receiver)
        outcome = receiver.handle(body("plain"))
    # Nothing failed before the answer, so the receiver's policy has nothing to count.
    assert outcome.failed == () and outcome.dead_lettered == ()


def test_max_attempts_must_be_positive() -> None:
    from yalgaar_receiver import ConfigurationError

    with pytest.raises(ConfigurationError, match="max_attempts must be a positive integer"):
        Receiver([KEY], max_attempts=0)
