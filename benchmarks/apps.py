"""The two WSGI apps the HTTP benchmark drives with gunicorn: the floor and the receiver.

``apps:make_floor()`` is the least a Flask app can do with a webhook: read the JSON body, answer
204. ``apps:make_receiver()`` is the real blueprint with one no-op handler per event signal
(``on_bind``, ``on_unbind``, ``on_presence``, ``on_message``, ``on_unknown``: a bind event reaches
two of them, as it reaches the ``bind`` and ``presence`` signals), answering the JSON summary a
real deployment answers; ``make_receiver(url_token=True)`` adds the secret URL token that
``docs/security.md`` recommends, and ``make_receiver(instrumented=True)`` the Prometheus metrics
and OpenTelemetry traces of ``docs/observability.md`` (an SDK tracer provider with no
exporter; ``sampled=0.01`` keeps 1% of the traces). Blinker subscribers cost the same as
handlers per call; they are left out so that the figure is the receiver's and not blinker's.
"""

from __future__ import annotations

import typing as t

import envelopes
from flask import Flask, request

from yalgaar_receiver import Receiver, create_blueprint


def make_floor() -> Flask:
    """The floor: parse the body, answer 204."""
    app = Flask("floor")

    @app.post("/floor")
    def floor() -> tuple[str, int]:
        request.get_json()
        return "", 204

    return app


def _noop(*args: t.Any, **kwargs: t.Any) -> None:
    """Stands for an application's handler; does nothing, so only the receiver is measured."""


def instrument(
    receiver: Receiver, *, metrics: bool = True, traces: bool = True, sampled: float | None = None
) -> tuple[t.Any, t.Any, t.Any]:
    """Metrics into a registry of their own, and traces into a provider with no exporter; the
    :class:`~yalgaar_receiver.metrics.Metrics`, the :class:`~yalgaar_receiver.tracing.Tracing`
    and the provider (each ``None`` when switched off), for the test that checks the switches
    are live.

    :param sampled: the share of traces the provider keeps (``ParentBased(TraceIdRatioBased)``);
        ``None`` keeps every one, the SDK's default.
    """
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
    from prometheus_client import CollectorRegistry

    from yalgaar_receiver import metrics as metrics_module
    from yalgaar_receiver import tracing

    counted = metrics_module.instrument(receiver, registry=CollectorRegistry()) if metrics else None
    if not traces:
        return counted, None, None
    provider = (
        TracerProvider()
        if sampled is None
        else TracerProvider(sampler=ParentBased(TraceIdRatioBased(sampled)))
    )
    return counted, tracing.instrument(receiver, tracer_provider=provider), provider


def make_receiver(
    url_token: bool = False, instrumented: bool = False, sampled: float | None = None
) -> Flask:
    """The receiver's blueprint under ``/yalgaar``, with a no-op handler per event signal.

    :param url_token: protect it with a URL token as well (``/yalgaar/<token>/presence``), the
        set-up ``docs/security.md`` recommends; without, the client key alone protects it.
    :param instrumented: with metrics and traces (:func:`instrument`).
    :param sampled: with ``instrumented``, the share of traces kept (:func:`instrument`).
    """
    receiver = Receiver(client_keys=[envelopes.CLIENT_KEY])
    for decorator in (
        receiver.on_bind,
        receiver.on_unbind,
        receiver.on_presence,
        receiver.on_message,
        receiver.on_unknown,
    ):
        decorator(_noop)
    instruments = instrument(receiver, sampled=sampled) if instrumented else None
    app = Flask("receiver")
    if url_token:
        blueprint = create_blueprint(receiver, url_tokens=[envelopes.URL_TOKEN])
    else:
        blueprint = create_blueprint(receiver, allow_client_key_only=True)
    app.register_blueprint(blueprint, url_prefix="/yalgaar")
    app.extensions["bench_instruments"] = instruments
    return app
