"""OpenTelemetry spans from the receiver's signals, asserted with the SDK's in-memory exporter:
a request span, a child per handler call, the trace carried to the thread pool and to a real
Celery worker (consuming a real Redis broker in this process), and nothing without a provider."""

from __future__ import annotations

import logging
import typing as t

import pytest
from celery import Celery
from celery.contrib.testing.worker import start_worker
from flask import Flask
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import SpanKind, StatusCode

from yalgaar_receiver import (
    MessageEvent,
    Receiver,
    ThreadPoolDispatcher,
    create_blueprint,
    signals,
    tracing,
)
from yalgaar_receiver.delivery.celery import CeleryDispatcher
from yalgaar_receiver.presence import PresenceTracker
from yalgaar_receiver.routing import handler_name
from yalgaar_receiver.testing import (
    bind,
    capture_events,
    message,
    message_envelope,
    presence_envelope,
)

from ..servers import RedisServer

KEY = "ck-0123456789abcdef"


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def client_for(receiver: Receiver) -> t.Any:
    app = Flask(__name__)
    app.config["YALGAAR_ALLOW_CLIENT_KEY_ONLY"] = True
    app.register_blueprint(create_blueprint(receiver), url_prefix="/yalgaar")
    return app.test_client()


def by_name(spans: t.Sequence[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [span for span in spans if span.name == name]


def test_a_request_span_with_a_child_per_handler_call(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    receiver = Receiver([KEY])

    @receiver.on_message
    def fine(event: MessageEvent) -> None:
        pass

    @receiver.on_message(channel="boom")
    def broken(event: MessageEvent) -> None:
        raise RuntimeError("the handler failed")

    traced = tracing.instrument(receiver, tracer_provider=provider)
    try:
        body = message_envelope(
            message("ok", "u1", "a"), message("boom", "u2", "b"), {"channel": None},
            client_key=KEY,
        )  # fmt: skip
        answer = client_for(receiver).post("/yalgaar/message", data=body.to_bytes())
        assert answer.status_code == 500
    finally:
        traced.close()
    spans = exporter.get_finished_spans()
    [request] = by_name(spans, "yalgaar.receive")
    assert request.kind is SpanKind.SERVER
    assert dict(request.attributes or {}) == {
        "yalgaar.route": "message",
        "yalgaar.source": "message",
        "yalgaar.items": 3,
        "yalgaar.accepted": 2,
        "yalgaar.rejected": 1,
        "yalgaar.failed": 1,
        "http.response.status_code": 500,
    }
    assert request.status.status_code is StatusCode.ERROR
    calls = by_name(spans, "yalgaar.handle")
    assert [span.attributes and span.attributes["yalgaar.handler"] for span in calls] == [
        f"{fine.__module__}.{fine.__qualname__}",
        f"{fine.__module__}.{fine.__qualname__}",
        f"{broken.__module__}.{broken.__qualname__}",
    ]
    assert all(span.parent is not None for span in calls)
    assert {span.parent.span_id for span in calls if span.parent} == {request.context.span_id}
    assert {span.context.trace_id for span in calls} == {request.context.trace_id}
    failed = calls[-1]
    assert failed.status.status_code is StatusCode.ERROR
    [exception] = [e for e in failed.events if e.name == "exception"]
    assert (exception.attributes or {})["exception.message"] == "the handler failed"


def test_a_requests_presence_store_call_has_its_own_span(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    # The tracker's deferred store call, once per request, is a child of the request's span.
    receiver = Receiver([KEY])
    tracker = PresenceTracker(receiver, sweep_interval=None)
    traced = tracing.instrument(receiver, tracer_provider=provider)
    try:
        body = presence_envelope(bind("a", "u1"), bind("a", "u2"), client_key=KEY)
        assert (
            client_for(receiver).post("/yalgaar/presence", data=body.to_bytes()).status_code == 200
        )
    finally:
        traced.close()
        tracker.close()
    spans = exporter.get_finished_spans()
    [request] = by_name(spans, "yalgaar.receive")
    flush = handler_name(tracker.apply_updates)
    [store_call] = [
        span
        for span in by_name(spans, "yalgaar.handle")
        if (span.attributes or {}).get("yalgaar.handler") == flush
    ]
    assert store_call.parent is not None and store_call.parent.span_id == request.context.span_id
    assert (store_call.attributes or {})["yalgaar.event"] == "bind"
    assert tracker.members("a") == {"u1", "u2"}


def test_without_a_provider_nothing_is_connected_per_call() -> None:
    receiver = Receiver([KEY])
    receiver.on_message(lambda event: None)
    traced = tracing.instrument(receiver)  # no global provider is configured in the tests
    try:
        assert "active=False" in repr(traced)
        assert not receiver.listened(signals.handler_started)
        assert not receiver.listened(signals.handler_finished)
        client_for(receiver).post(
            "/yalgaar/message",
            data=message_envelope(message("c", "u", "x"), client_key=KEY).to_bytes(),
        )
        assert not receiver.listened(signals.handler_started)  # still nothing per call
    finally:
        traced.close()


class Dropping(Sampler):
    """Drops every span, and keeps the names it was asked about."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def should_sample(
        self, parent_context: t.Any, trace_id: int, name: str, *args: t.Any, **kwargs: t.Any
    ) -> SamplingResult:
        self.asked.append(name)
        return SamplingResult(Decision.DROP)

    def get_description(self) -> str:
        return "Dropping"


def test_the_handler_calls_of_a_request_that_is_not_sampled_make_no_span() -> None:
    # A dropped span costs nearly what a recorded one does: under a request the sampler
    # dropped, the handler calls do not even ask. Without a request around them they do.
    sampler = Dropping()
    provider = TracerProvider(sampler=sampler)
    receiver = Receiver([KEY])
    handled: list[str] = []
    receiver.on_message(lambda event: handled.append(event.message))
    traced = tracing.instrument(receiver, tracer_provider=provider)
    try:
        body = message_envelope(message("a", "u", "1"), message("b", "u", "2"), client_key=KEY)
        assert client_for(receiver).post("/yalgaar/", data=body.to_bytes()).status_code == 200
        assert sampler.asked == ["yalgaar.receive"]
        assert handled == ["1", "2"]
        receiver.handle(body.to_bytes())  # no request span: each call is a root, and asks
        assert sampler.asked[1:] == ["yalgaar.handle", "yalgaar.handle"]
    finally:
        traced.close()


def test_the_thread_pool_carries_the_request_s_trace(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    dispatcher = ThreadPoolDispatcher(max_workers=2)
    receiver = Receiver([KEY], dispatcher=dispatcher)
    receiver.on_message(lambda event: None)
    traced = tracing.instrument(receiver, tracer_provider=provider)
    try:
        with capture_events(receiver) as capture:
            body = message_envelope(message("a", "u", "1"), message("b", "u", "2"), client_key=KEY)
            assert client_for(receiver).post("/yalgaar/", data=body.to_bytes()).status_code == 200
            capture.wait_for(2)
        assert dispatcher.close(timeout=10)
    finally:
        traced.close()
    spans = exporter.get_finished_spans()
    [request] = by_name(spans, "yalgaar.receive")
    calls = [span for span in by_name(spans, "yalgaar.handle") if "lambda" in str(span.attributes)]
    assert len(calls) == 2
    assert {span.context.trace_id for span in calls} == {request.context.trace_id}


def run_on_a_celery_worker(
    redis_server: RedisServer, provider: TracerProvider, mode: str, *texts: str
) -> list[str]:
    """Post one Message envelope of ``texts`` to a traced receiver whose CeleryDispatcher
    (``mode``) publishes to a real worker in this process; what the worker's handler got."""
    app = Celery(f"yalgaar_tracing_{mode}_test", broker=redis_server.url)
    app.conf.update(broker_connection_retry_on_startup=True, worker_hijack_root_logger=False)
    queue = f"tracing-{mode}-test"
    dispatcher = CeleryDispatcher(app, queue=queue, mode=mode, retry_jitter=False)
    receiver = Receiver([KEY], dispatcher=dispatcher)
    done: list[str] = []

    @receiver.on_message
    def on_worker(event: MessageEvent) -> None:
        done.append(event.message)

    traced = tracing.instrument(receiver, dispatcher=dispatcher, tracer_provider=provider)
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)  # the worker sets up logging its way
    try:
        with (
            capture_events(receiver) as capture,
            start_worker(app, pool="solo", perform_ping_check=False, queues=[queue]),
        ):
            body = message_envelope(*(message("c", "u", text) for text in texts), client_key=KEY)
            assert client_for(receiver).post("/yalgaar/", data=body.to_bytes()).status_code == 200
            capture.wait_for(len(texts), timeout=30)
    finally:
        traced.close()
        app.close()
        root.setLevel(level)
        root.handlers[:] = handlers
    return done


def test_the_trace_continues_on_a_celery_worker(
    redis_server: RedisServer, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    assert run_on_a_celery_worker(redis_server, provider, "event", "across") == ["across"]
    spans = exporter.get_finished_spans()
    [request] = by_name(spans, "yalgaar.receive")
    [task] = by_name(spans, "yalgaar.task")
    [call] = [s for s in by_name(spans, "yalgaar.handle") if "on_worker" in str(s.attributes)]
    assert task.kind is SpanKind.CONSUMER
    assert task.context.trace_id == request.context.trace_id == call.context.trace_id
    assert task.parent is not None and task.parent.span_id == request.context.span_id
    assert call.parent is not None and call.parent.span_id == task.context.span_id
    assert (task.attributes or {})["yalgaar.attempt"] == 1


def test_an_envelope_task_s_handler_calls_are_each_under_their_own_event_s_task_span(
    redis_server: RedisServer, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    # mode="envelope" runs every event of a request in one task: each event still gets its
    # yalgaar.task span, and each handler call goes under the span of the event it handles.
    done = run_on_a_celery_worker(redis_server, provider, "envelope", "first", "second")
    assert done == ["first", "second"]
    spans = exporter.get_finished_spans()
    [request] = by_name(spans, "yalgaar.receive")
    tasks = sorted(by_name(spans, "yalgaar.task"), key=lambda span: span.start_time or 0)
    calls = sorted(
        (s for s in by_name(spans, "yalgaar.handle") if "on_worker" in str(s.attributes)),
        key=lambda span: span.start_time or 0,
    )
    assert len(tasks) == len(calls) == 2
    assert {span.context.trace_id for span in tasks + calls} == {request.context.trace_id}
    for task, call in zip(tasks, calls, strict=True):
        assert task.parent is not None and task.parent.span_id == request.context.span_id
        assert call.parent is not None and call.parent.span_id == task.context.span_id
