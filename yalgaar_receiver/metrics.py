"""Prometheus metrics for a receiver, built on its signals (the optional extra ``metrics``).

``instrument(receiver)`` connects to the receiver's signals (and to its dispatcher's and
tracker's, when given) and counts into ``prometheus_client`` metrics; nothing inside the receiver
knows about Prometheus. Every label value comes from a closed set: the blueprint's routes, HTTP
statuses, event kinds, and the names of handlers registered in code. Nothing read from a body
(a channel, a uuid) ever becomes a label, so a sender cannot grow the number of series.

Under gunicorn with several workers, set ``PROMETHEUS_MULTIPROC_DIR`` (``prometheus_client``'s
multi-process mode): every worker writes its counts to files there, and
:meth:`Metrics.exposition` sums them whichever worker answers the scrape. ``docs/observability.md``
shows the set-up.

Imports: the core, the delivery and presence rooms' types, and ``prometheus_client``.
"""

from __future__ import annotations

import collections
import os
import typing as t
import weakref

try:
    from prometheus_client import (
        CONTENT_TYPE_LATEST,
        REGISTRY,
        CollectorRegistry,
        Counter,
        Gauge,
        Histogram,
        generate_latest,
        multiprocess,
    )
    from prometheus_client.core import GaugeMetricFamily
    from prometheus_client.registry import Collector
except ModuleNotFoundError as error:  # pragma: no cover - the test runs in a subprocess
    from ._extras import missing

    raise missing(error, "yalgaar_receiver.metrics", "metrics") from error

from . import signals
from .delivery.dispatch import Dispatcher
from .delivery.threads import ThreadPoolDispatcher
from .events import Batch, Event, Outcome, Rejection
from .exceptions import AuthenticationError, YalgaarError
from .presence.tracker import PresenceTracker
from .receiver import Receiver
from .routing import handler_name

__all__ = ["BATCH_BUCKETS", "HANDLER_BUCKETS", "Metrics", "instrument"]

#: Buckets of ``yalgaar_batch_items``: 199 and 200 apart, since 200 is Yalgaar's cap.
BATCH_BUCKETS: t.Final = (1, 2, 5, 10, 25, 50, 100, 150, 199, 200, 500, 1000, 10_000)
#: Buckets of ``yalgaar_handler_seconds``: a handler runs inside a 2-second batching window.
HANDLER_BUCKETS: t.Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)


class _Families:
    """The metric objects of one registry, made once, shared by every receiver counted into it."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "yalgaar_requests",
            "Requests answered by the blueprint, by route and HTTP status.",
            ["route", "status"],
            registry=registry,
        )
        self.events = Counter(
            "yalgaar_events", "Events accepted, by kind.", ["kind"], registry=registry
        )
        self.rejected = Counter(
            "yalgaar_items_rejected",
            "Items rejected (malformed, undecryptable, or refused by a payload schema), by kind.",
            ["kind"],
            registry=registry,
        )
        self.auth_failures = Counter(
            "yalgaar_auth_failures",
            "Requests refused because a credential did not match.",
            registry=registry,
        )
        self.handler_seconds = Histogram(
            "yalgaar_handler_seconds",
            "Time of each handler call, by handler.",
            ["handler"],
            buckets=HANDLER_BUCKETS,
            registry=registry,
        )
        self.handler_failures = Counter(
            "yalgaar_handler_failures",
            "Handler calls that raised, by handler.",
            ["handler"],
            registry=registry,
        )
        self.duplicates = Counter(
            "yalgaar_duplicates", "Events not run again: already handled.", registry=registry
        )
        self.dead_letters = Counter(
            "yalgaar_dead_letters",
            "Events given up and kept as dead letters.",
            registry=registry,
        )
        self.queue_depth = Gauge(
            "yalgaar_queue_depth",
            "Events waiting for a thread of the thread pool.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.batch_items = Histogram(
            "yalgaar_batch_items",
            "Items per envelope.",
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self.possible_loss = Counter(
            "yalgaar_possible_loss",
            "Envelopes as full as the sender makes them: events were probably dropped.",
            registry=registry,
        )


_FAMILIES: weakref.WeakKeyDictionary[CollectorRegistry, _Families] = weakref.WeakKeyDictionary()


def _families(registry: CollectorRegistry) -> _Families:
    found = _FAMILIES.get(registry)
    if found is None:
        found = _FAMILIES[registry] = _Families(registry)
    return found


class PresenceCollector(Collector):
    """``yalgaar_presence_channels`` and ``yalgaar_presence_members``, read from a tracker's
    store when scraped (one script call for a Redis store)."""

    def __init__(self, tracker: PresenceTracker) -> None:
        self.tracker = tracker

    def collect(self) -> t.Iterator[GaugeMetricFamily]:
        channels, members = self.tracker.counts()
        yield GaugeMetricFamily(
            "yalgaar_presence_channels", "Channels with at least one member.", value=channels
        )
        yield GaugeMetricFamily(
            "yalgaar_presence_members",
            "Members of all channels (a uuid in two channels counts twice).",
            value=members,
        )
        stale = self.tracker.stale_since
        yield GaugeMetricFamily(
            "yalgaar_presence_stale",
            "1 while the presence state may have missed events (possible loss at the sender).",
            value=0 if stale is None else 1,
        )


def multiprocess_mode() -> bool:
    """Whether ``prometheus_client`` runs in multi-process mode (``PROMETHEUS_MULTIPROC_DIR``)."""
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


class Metrics:
    """The instruments of one receiver; made by :func:`instrument`.

    :param registry: where the metrics are registered.
    """

    def __init__(
        self,
        receiver: Receiver,
        registry: CollectorRegistry,
        dispatcher: Dispatcher | None,
        tracker: PresenceTracker | None,
    ) -> None:
        self.receiver = receiver
        self.registry = registry
        self.dispatcher = dispatcher
        self.tracker = tracker
        self._families = _families(registry)
        self._handlers: dict[t.Callable[..., t.Any], tuple[t.Any, t.Any]] = {}
        self._collector: PresenceCollector | None = None
        families = self._families
        self._pool = dispatcher if isinstance(dispatcher, ThreadPoolDispatcher) else None
        pool = self._pool
        if pool is not None and not multiprocess_mode():
            families.queue_depth.set_function(lambda: pool.queued)
        if tracker is not None and not multiprocess_mode():
            self._collector = PresenceCollector(tracker)
            registry.register(self._collector)
        # (signal, subscriber, sender): connected strongly, disconnected by close().
        self._connections: list[tuple[t.Any, t.Callable[..., None], object]] = [
            (signals.request_answered, self._answered, receiver),
            (signals.envelope_received, self._received, receiver),
            (signals.event_rejected, self._rejected, receiver),
            (signals.payload_rejected, self._rejected, receiver),
            (signals.envelope_rejected, self._refused, receiver),
            (signals.handler_finished, self._handled, receiver),
            (signals.duplicate_event, self._duplicate, receiver),
            (signals.event_dead_lettered, self._dead_letter, receiver),
            (signals.possible_loss, self._loss, receiver),
        ]
        if dispatcher is not None:
            self._connections.append((signals.event_dead_lettered, self._dead_letter, dispatcher))
        for signal, subscriber, sender in self._connections:
            signal.connect(subscriber, sender=sender, weak=False)

    def __repr__(self) -> str:
        return f"<Metrics receiver={self.receiver!r}>"

    def exposition(self) -> tuple[bytes, str]:
        """The metrics in Prometheus' text format, and its content type: what a ``/metrics``
        view answers. In multi-process mode, the sum over every worker's files, with the
        presence gauges read from the tracker's store."""
        registry = self.registry
        if multiprocess_mode():
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            if self.tracker is not None:
                registry.register(PresenceCollector(self.tracker))
        return generate_latest(registry), CONTENT_TYPE_LATEST

    def close(self) -> None:
        """Disconnect from the signals; the counts stay in the registry."""
        for signal, subscriber, _ in self._connections:
            signal.disconnect(subscriber)
        if self._collector is not None:
            self.registry.unregister(self._collector)
            self._collector = None

    # -- the subscribers ---------------------------------------------------------------------

    def _answered(
        self, sender: Receiver, *, route: str, status: int, outcome: Outcome | None, **extra: t.Any
    ) -> None:
        self._families.requests.labels(route, str(status)).inc()
        self._depth()

    def _received(self, sender: Receiver, *, batch: Batch, **extra: t.Any) -> None:
        families = self._families
        for kind, count in collections.Counter(e.event_type for e in batch.events).items():
            families.events.labels(kind).inc(count)
        for size in batch.sizes:
            families.batch_items.observe(size)

    def _rejected(self, sender: Receiver, *, rejection: Rejection, **extra: t.Any) -> None:
        self._families.rejected.labels(rejection.kind or "unknown").inc()

    def _refused(self, sender: Receiver, *, error: YalgaarError, **extra: t.Any) -> None:
        if isinstance(error, AuthenticationError):
            self._families.auth_failures.inc()

    def _handled(
        self,
        sender: Receiver,
        *,
        handler: t.Callable[..., t.Any],
        seconds: float,
        error: BaseException | None,
        **extra: t.Any,
    ) -> None:
        children = self._handlers.get(handler)
        if children is None:
            name = handler_name(handler)
            children = (
                self._families.handler_seconds.labels(name),
                self._families.handler_failures.labels(name),
            )
            self._handlers[handler] = children
        children[0].observe(seconds)
        if error is not None:
            children[1].inc()
        self._depth()

    def _depth(self) -> None:
        # In multi-process mode a gauge cannot be read when scraped: it is written as it moves.
        if self._pool is not None and multiprocess_mode():
            self._families.queue_depth.set(self._pool.queued)

    def _duplicate(self, sender: Receiver, *, event: Event, **extra: t.Any) -> None:
        self._families.duplicates.inc()

    def _dead_letter(self, sender: object, *, event: Event, **extra: t.Any) -> None:
        self._families.dead_letters.inc()

    def _loss(self, sender: Receiver, **extra: t.Any) -> None:
        self._families.possible_loss.inc()


def instrument(
    receiver: Receiver,
    *,
    registry: CollectorRegistry | None = None,
    dispatcher: Dispatcher | None = None,
    tracker: PresenceTracker | None = None,
) -> Metrics:
    """Count what ``receiver`` does into Prometheus metrics (names in ``docs/observability.md``).

    :param registry: where to register them; ``prometheus_client``'s default registry by
        default. Receivers instrumented into one registry share its metrics.
    :param dispatcher: the receiver's background dispatcher, for the events it gives up
        (``yalgaar_dead_letters``), and with a :class:`~yalgaar_receiver.ThreadPoolDispatcher`
        its queue (``yalgaar_queue_depth``).
    :param tracker: a :class:`~yalgaar_receiver.presence.PresenceTracker`, for the presence
        gauges, read from its store when scraped.
    """
    return Metrics(receiver, REGISTRY if registry is None else registry, dispatcher, tracker)
