"""OpenTelemetry traces for a receiver, built on its signals (the optional extra ``tracing``).

``instrument(receiver)`` gives each request the blueprint answers a ``yalgaar.receive`` span, and
each handler call a ``yalgaar.handle`` child span, with the exception recorded when it raises.
With a :class:`~yalgaar_receiver.delivery.celery.CeleryDispatcher` passed too, the trace context
travels in the task and continues on the worker under a ``yalgaar.task`` span (instrument the
worker's receiver and dispatcher the same way). The thread pool carries the request's context to
its threads by itself. The handler calls of a request (or task) whose span the sampler dropped
make no span at all: a span the sampler drops still costs about half of a recorded one.

Only ``opentelemetry-api`` is imported: the application configures the SDK, or not. While no
tracer provider is configured (and none is passed), the handler signals are not even connected,
so a receiver pays nothing per handler call; they are connected on the first request after one
is configured.

Imports: the core, the delivery room's types, and ``opentelemetry-api``.
"""

from __future__ import annotations

import threading
import typing as t

try:
    from opentelemetry import context as otel_context
    from opentelemetry import propagate, trace
    from opentelemetry.trace import Span, SpanKind, Status, StatusCode
except ModuleNotFoundError as error:  # pragma: no cover - the test runs in a subprocess
    from ._extras import missing

    raise missing(error, "yalgaar_receiver.tracing", "tracing") from error

from . import signals
from ._version import __version__
from .delivery.dispatch import Dispatcher
from .events import Batch, Event, Outcome
from .receiver import Receiver
from .routing import handler_name

__all__ = ["Tracing", "instrument"]

#: The instrumentation scope's name: what a backend shows as the spans' library.
SCOPE: t.Final = "yalgaar_receiver"

# A span and the token that made it current; (None, None) for a handler call not traced.
_Open = tuple[Span | None, object | None]
#: A signal, a subscriber, and the sender it listens to.
_Connection = tuple[t.Any, t.Callable[..., None], object]


class Tracing:
    """The spans of one receiver; made by :func:`instrument`."""

    def __init__(
        self,
        receiver: Receiver,
        dispatcher: Dispatcher | None,
        tracer_provider: trace.TracerProvider | None,
    ) -> None:
        self.receiver = receiver
        self.dispatcher = dispatcher
        self._provider = tracer_provider
        self._tracer: trace.Tracer | None = None
        self._lock = threading.Lock()
        # Spans opened by a "started" signal and closed by its "finished" one, per thread: the
        # two are sent by the same thread, around the call, properly nested. Task spans are
        # also found by their event (``tasks``): an envelope task opens every event's span
        # before it runs any, and each handler call goes under the span of its own event.
        self._open = threading.local()
        self._always: list[_Connection] = [
            (signals.request_started, self._request_started, receiver),
            (signals.request_answered, self._request_answered, receiver),
            (signals.envelope_received, self._received, receiver),
        ]
        if dispatcher is not None:
            self._always += [
                (signals.task_publishing, self._publishing, dispatcher),
                (signals.task_started, self._task_started, dispatcher),
                (signals.task_finished, self._task_finished, dispatcher),
            ]
        self._per_call: list[_Connection] = [
            (signals.handler_started, self._handler_started, receiver),
            (signals.handler_finished, self._handler_finished, receiver),
        ]
        self._connected_calls = False
        for signal, subscriber, sender in self._always:
            signal.connect(subscriber, sender=sender, weak=False)
        self._activate()

    def __repr__(self) -> str:
        return f"<Tracing receiver={self.receiver!r} active={self._tracer is not None}>"

    def close(self) -> None:
        """Disconnect from the signals."""
        for signal, subscriber, _ in self._always + self._per_call:
            signal.disconnect(subscriber)
        self._connected_calls = False

    def _activate(self) -> trace.Tracer | None:
        """The tracer, once a provider is configured; connects the per-call signals then."""
        if self._tracer is not None:
            return self._tracer
        provider = self._provider or trace.get_tracer_provider()
        if isinstance(provider, trace.ProxyTracerProvider):
            return None  # nothing configured: no spans, and no subscriber per handler call
        with self._lock:
            if self._tracer is None:
                self._tracer = provider.get_tracer(SCOPE, __version__)
                for signal, subscriber, sender in self._per_call:
                    signal.connect(subscriber, sender=sender, weak=False)
                self._connected_calls = True
        return self._tracer

    def _push(self, span: Span | None) -> None:
        """Make ``span`` current until its :meth:`_pop`; ``None`` holds the place of a call
        that is not traced, and changes nothing."""
        token = None if span is None else otel_context.attach(trace.set_span_in_context(span))
        stack: list[_Open] = self._open.__dict__.setdefault("stack", [])
        stack.append((span, token))

    def _pop(self) -> Span | None:
        stack: list[_Open] = self._open.__dict__.get("stack", [])
        if not stack:
            return None
        span, token = stack.pop()
        if token is not None:
            otel_context.detach(token)  # type: ignore[arg-type]
        return span

    def _tasks(self) -> dict[int, Span]:
        """This thread's open task spans, by the ``id`` of their event."""
        tasks: dict[int, Span] = self._open.__dict__.setdefault("tasks", {})
        return tasks

    # -- the request -------------------------------------------------------------------------

    def _request_started(self, sender: Receiver, *, route: str, **extra: t.Any) -> None:
        tracer = self._activate()
        if tracer is None:
            return
        span = tracer.start_span(
            "yalgaar.receive", kind=SpanKind.SERVER, attributes={"yalgaar.route": route}
        )
        self._push(span)

    def _received(self, sender: Receiver, *, batch: Batch, **extra: t.Any) -> None:
        span = trace.get_current_span()
        if not span.is_recording():
            return
        span.set_attribute(
            "yalgaar.source", ",".join(dict.fromkeys(s or "-" for s in batch.sources))
        )
        span.set_attribute("yalgaar.items", sum(batch.sizes))

    def _request_answered(
        self,
        sender: Receiver,
        *,
        status: int,
        outcome: Outcome | None,
        **extra: t.Any,
    ) -> None:
        if self._tracer is None:
            return
        span = self._pop()
        if span is None:
            return
        span.set_attribute("http.response.status_code", status)
        if outcome is not None:
            span.set_attribute("yalgaar.accepted", len(outcome.accepted))
            span.set_attribute("yalgaar.rejected", len(outcome.rejected))
            span.set_attribute("yalgaar.failed", len(outcome.failed))
        if status >= 500:
            span.set_status(Status(StatusCode.ERROR, f"answered {status}"))
        span.end()

    # -- each handler call -------------------------------------------------------------------

    def _handler_started(
        self, sender: Receiver, *, event: Event, handler: t.Callable[..., t.Any], **extra: t.Any
    ) -> None:
        assert self._tracer is not None
        task = self._tasks().get(id(event))
        parent = (trace.get_current_span() if task is None else task).get_span_context()
        if parent.is_valid and not parent.trace_flags.sampled:
            # The request (or task) was not sampled, so its handler calls are not traced: a
            # span the sampler drops costs about half of a recorded one, per call. (The flag,
            # not is_recording(): the thread pool runs handlers after the request's span has
            # ended.)
            self._push(None)
            return
        span = self._tracer.start_span(
            "yalgaar.handle",
            context=None if task is None else trace.set_span_in_context(task),
            attributes={
                "yalgaar.handler": handler_name(handler),
                "yalgaar.event": event.event_type,
            },
        )
        self._push(span)

    def _handler_finished(
        self, sender: Receiver, *, error: BaseException | None, **extra: t.Any
    ) -> None:
        span = self._pop()
        if span is None:
            return
        if error is not None:
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, type(error).__name__))
        span.end()

    # -- Celery tasks ------------------------------------------------------------------------

    def _publishing(self, sender: object, *, carrier: dict[str, str], **extra: t.Any) -> None:
        if self._activate() is not None:
            propagate.inject(carrier)

    def _task_started(
        self,
        sender: object,
        *,
        event: Event,
        carrier: t.Mapping[str, str],
        attempt: int,
        **extra: t.Any,
    ) -> None:
        tracer = self._activate()
        if tracer is None:
            return
        span = tracer.start_span(
            "yalgaar.task",
            context=propagate.extract(carrier),
            kind=SpanKind.CONSUMER,
            attributes={"yalgaar.event": event.event_type, "yalgaar.attempt": attempt},
        )
        self._push(span)
        self._tasks()[id(event)] = span

    def _task_finished(self, sender: object, *, event: Event, **extra: t.Any) -> None:
        if self._tracer is None:
            return
        # The context is restored in the order it was set; the span that ends is the event's.
        top = self._pop()
        span = self._tasks().pop(id(event), top)
        if span is not None:
            span.end()


def instrument(
    receiver: Receiver,
    *,
    dispatcher: Dispatcher | None = None,
    tracer_provider: trace.TracerProvider | None = None,
) -> Tracing:
    """Trace what ``receiver`` does (span names and attributes in ``docs/observability.md``).

    :param dispatcher: the receiver's :class:`~yalgaar_receiver.delivery.celery.CeleryDispatcher`,
        so that the trace continues on its workers.
    :param tracer_provider: the provider to take the tracer from; OpenTelemetry's global one
        by default.
    """
    return Tracing(receiver, dispatcher, tracer_provider)
