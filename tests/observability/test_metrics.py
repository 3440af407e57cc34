"""Prometheus metrics counted from the receiver's signals, in one process: each metric moves as
the traffic implies, and nothing from a body becomes a label."""

from __future__ import annotations

import typing as t

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from yalgaar_receiver import (
    MessageEvent,
    Receiver,
    ThreadPoolDispatcher,
    create_blueprint,
    signals,
)
from yalgaar_receiver.delivery import MemoryDedupeStore
from yalgaar_receiver.metrics import Metrics, instrument
from yalgaar_receiver.presence import MemoryPresenceStore, PresenceTracker
from yalgaar_receiver.routing import handler_name
from yalgaar_receiver.testing import (
    bind,
    capture_events,
    message,
    message_envelope,
    presence_envelope,
    unbind,
)

KEY = "ck-0123456789abcdef"
#: Every metric the issue names, which dashboards rely on.
NAMES = [
    "yalgaar_requests_total",
    "yalgaar_events_total",
    "yalgaar_items_rejected_total",
    "yalgaar_auth_failures_total",
    "yalgaar_handler_seconds",
    "yalgaar_handler_failures_total",
    "yalgaar_duplicates_total",
    "yalgaar_dead_letters_total",
    "yalgaar_queue_depth",
    "yalgaar_batch_items",
    "yalgaar_presence_channels",
    "yalgaar_presence_members",
    "yalgaar_possible_loss_total",
]


class App(t.NamedTuple):
    receiver: Receiver
    client: FlaskClient
    metrics: Metrics
    registry: CollectorRegistry
    tracker: PresenceTracker


@pytest.fixture
def app() -> t.Iterator[App]:
    receiver = Receiver([KEY], dedupe=MemoryDedupeStore(), max_attempts=2)

    @receiver.on_message(channel="orders")
    def orders(event: MessageEvent) -> None:
        if event.message == "poison":
            raise ValueError("cannot read this order")

    tracker = PresenceTracker(receiver, sweep_interval=None)
    registry = CollectorRegistry()
    metrics = instrument(receiver, registry=registry, tracker=tracker)
    flask_app = Flask(__name__)
    flask_app.config["YALGAAR_ALLOW_CLIENT_KEY_ONLY"] = True
    flask_app.register_blueprint(create_blueprint(receiver), url_prefix="/yalgaar")
    try:
        yield App(receiver, flask_app.test_client(), metrics, registry, tracker)
    finally:
        metrics.close()
        tracker.close()


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    found = registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


def test_each_metric_counts_what_the_traffic_implies(app: App) -> None:
    post = app.client.post
    presence = presence_envelope(
        bind("lobby", "alice"), bind("lobby", "bob"), unbind("lobby", "bob"), {"channel": None},
        client_key=KEY,
    )  # fmt: skip
    assert post("/yalgaar/presence", data=presence.to_bytes()).status_code == 200
    assert post("/yalgaar/presence", data=presence.to_bytes()).status_code == 200  # duplicates
    chat = message_envelope(message("orders", "carol", "tea", at=1521609600), client_key=KEY)
    assert post("/yalgaar/message", data=chat.to_bytes()).status_code == 200
    stranger = presence_envelope(bind("lobby", "eve"), client_key="ck-guessed")
    assert post("/yalgaar/presence", data=stranger.to_bytes()).status_code == 403
    assert post("/yalgaar/nowhere/at/all").status_code == 404
    # No URL tokens are configured: a token segment is a path that does not exist.
    assert post("/yalgaar/not-a-token/presence", data=presence.to_bytes()).status_code == 404
    poison = message_envelope(message("orders", "dan", "poison", at=1521609601), client_key=KEY)
    assert post("/yalgaar/", data=poison.to_bytes()).status_code == 500  # attempt 1
    assert post("/yalgaar/", data=poison.to_bytes()).status_code == 200  # 2: a dead letter

    registry = app.registry
    requests = {
        (s.labels["route"], s.labels["status"]): s.value
        for family in text_string_to_metric_families(app.metrics.exposition()[0].decode())
        if family.name == "yalgaar_requests"
        for s in family.samples
        if s.name == "yalgaar_requests_total"
    }
    assert requests == {
        ("presence", "200"): 2,
        ("message", "200"): 1,
        ("presence", "403"): 1,
        ("unmatched", "404"): 2,
        ("webhook", "500"): 1,
        ("webhook", "200"): 1,
    }
    assert value(registry, "yalgaar_events_total", kind="bind") == 4
    assert value(registry, "yalgaar_events_total", kind="unbind") == 2
    assert value(registry, "yalgaar_events_total", kind="message") == 3
    assert value(registry, "yalgaar_items_rejected_total", kind="presence") == 2
    assert value(registry, "yalgaar_auth_failures_total") == 1
    assert value(registry, "yalgaar_duplicates_total") == 3
    assert value(registry, "yalgaar_dead_letters_total") == 1
    handler = "tests.observability.test_metrics.app.<locals>.orders"
    assert value(registry, "yalgaar_handler_seconds_count", handler=handler) == 3
    assert value(registry, "yalgaar_handler_failures_total", handler=handler) == 2
    assert value(registry, "yalgaar_batch_items_count") == 5
    assert value(registry, "yalgaar_batch_items_bucket", le="5.0") == 5
    assert value(registry, "yalgaar_presence_channels") == 1
    assert value(registry, "yalgaar_presence_members") == 1
    assert value(registry, "yalgaar_possible_loss_total") == 0


def test_every_named_metric_is_exposed_and_no_body_text_is_a_label(app: App) -> None:
    secret_channel = "private-room-7f3a"
    body = presence_envelope(bind(secret_channel, "uuid-of-a-person"), client_key=KEY)
    app.client.post("/yalgaar/presence", data=body.to_bytes())
    text = app.metrics.exposition()[0].decode()
    families = {family.name for family in text_string_to_metric_families(text)}
    assert {name.removesuffix("_total") for name in NAMES} <= families
    assert secret_channel not in text and "uuid-of-a-person" not in text


def test_the_thread_pool_queue_and_its_dead_letters() -> None:
    dispatcher = ThreadPoolDispatcher(max_workers=1, queue_size=10)
    receiver = Receiver([KEY], dispatcher=dispatcher)
    receiver.on_message(lambda event: (_ for _ in ()).throw(RuntimeError("always")))
    registry = CollectorRegistry()
    metrics = instrument(receiver, registry=registry, dispatcher=dispatcher)
    try:
        with capture_events(receiver) as capture:
            receiver.handle(message_envelope(message("c", "u", "x"), client_key=KEY).to_bytes())
            capture.wait_for(1)
        assert dispatcher.close(timeout=10)
        assert value(registry, "yalgaar_queue_depth") == dispatcher.queued == 0
        assert value(registry, "yalgaar_dead_letters_total") == 1  # the pool gave it up
    finally:
        metrics.close()


def test_receivers_share_one_registry_and_close_disconnects() -> None:
    registry = CollectorRegistry()
    first, second = Receiver([KEY]), Receiver([KEY])
    one, two = instrument(first, registry=registry), instrument(second, registry=registry)
    body = presence_envelope(bind("c", "u"), client_key=KEY).to_bytes()
    first.handle(body)
    second.handle(body)
    assert value(registry, "yalgaar_events_total", kind="bind") == 2
    one.close()
    two.close()
    first.handle(body)
    assert value(registry, "yalgaar_events_total", kind="bind") == 2
    assert not first.listened(signals.handler_finished)
    assert not second.listened(signals.request_answered)


def test_without_prometheus_client_the_error_names_the_extra() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "class Blocked:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'prometheus_client':\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, Blocked())\n"
        "try:\n"
        "    import yalgaar_receiver.metrics\n"
        "except ModuleNotFoundError as error:\n"
        "    print(error)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert "pip install 'yalgaar-receiver[metrics]'" in done.stdout


class FailingOnce(MemoryPresenceStore):
    """A memory store whose first ``apply_many`` fails, as Redis does when it is down."""

    failures_left = 1

    def apply_many(self, *args: t.Any) -> t.Any:
        if self.failures_left:
            self.failures_left -= 1
            raise ConnectionError("the presence store is down")
        return super().apply_many(*args)


def test_a_requests_presence_store_call_is_one_observed_handler_call() -> None:
    # The tracker applies a request's binds and unbinds in one store call at its end (a unit's
    # deferred work): timed once per request, and counted once when it fails.
    receiver = Receiver(client_keys=[KEY])
    registry = CollectorRegistry()
    tracker = PresenceTracker(receiver, store=FailingOnce(), sweep_interval=None)
    metrics = instrument(receiver, registry=registry)
    flush = handler_name(tracker.apply_updates)
    # The label docs/observability.md names, which dashboards filter on.
    assert flush == "yalgaar_receiver.presence.tracker.PresenceTracker.apply_updates"
    try:
        body = presence_envelope(bind("a", "u1"), bind("a", "u2"), client_key=KEY).to_bytes()
        assert len(receiver.handle(body).failed) == 2  # both binds, by the one failed call
        assert value(registry, "yalgaar_handler_seconds_count", handler=flush) == 1
        assert value(registry, "yalgaar_handler_failures_total", handler=flush) == 1
        assert not receiver.handle(body).failed
        assert value(registry, "yalgaar_handler_seconds_count", handler=flush) == 2
        assert value(registry, "yalgaar_handler_failures_total", handler=flush) == 1
    finally:
        metrics.close()
        tracker.close()
