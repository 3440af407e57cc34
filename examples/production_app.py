"""A production-shaped receiver: secrets from the environment, de-duplication in Redis, gunicorn.

Everything comes from environment variables, so one image serves every environment:

``YALGAAR_CLIENT_KEYS``
    the ``clientKey`` values to accept, comma-separated (several while a key is rotated).
``YALGAAR_URL_TOKENS``
    the secret path segment(s) of the webhook URL, comma-separated; give Yalgaar
    ``https://host/yalgaar/<token>/presence`` and ``.../message`` (see ``docs/security.md``).
``YALGAAR_REDIS_URL``
    when set, events are de-duplicated in that Redis, shared by every worker and machine.
``YALGAAR_DEDUPE_LEASE``
    seconds a claimed event stays claimed when its worker dies mid-handler (default 60); make
    it longer than the slowest handler.
``YALGAAR_TRUSTED_PROXIES``, ``YALGAAR_ALLOWED_NETWORKS``
    read by the blueprint, as documented in ``docs/security.md``.
``YALGAAR_PRESENCE_STATE``
    ``1`` keeps who is in which channel in that Redis too (a ``PresenceTracker``).
``YALGAAR_METRICS``
    ``1`` serves Prometheus metrics at ``/metrics`` (``pip install yalgaar-receiver[metrics]``),
    to the networks in ``YALGAAR_METRICS_NETWORKS`` only (loopback by default): the webhook
    URLs are public, the metrics are not. Under gunicorn with several workers, also set
    ``PROMETHEUS_MULTIPROC_DIR`` to an empty directory, so that a scrape sums every worker
    (``docs/observability.md``).
``YALGAAR_TRACING``
    ``1`` traces requests and handler calls with OpenTelemetry
    (``pip install yalgaar-receiver[tracing]``), into the tracer provider the deployment
    configures (``opentelemetry-instrument``, say).

Run it behind a buffering reverse proxy (nginx) with threaded gunicorn workers, whose request
timeout keeps a stuck handler from holding a worker for ever::

    pip install yalgaar-receiver[redis] gunicorn
    YALGAAR_CLIENT_KEYS=ck-... YALGAAR_URL_TOKENS=$(openssl rand -hex 24) \\
    YALGAAR_REDIS_URL=redis://127.0.0.1:6379/0 \\
        gunicorn --worker-class gthread --workers 2 --threads 8 --timeout 30 \\
            --bind 127.0.0.1:8000 'examples.production_app:create_app()'

``tests/load`` runs exactly this under load, with a worker killed and slow clients connected.
"""

from __future__ import annotations

import ipaddress
import logging
import os

from flask import Flask, Response, abort, request

from yalgaar_receiver import MessageEvent, PresenceEvent, Receiver, create_blueprint
from yalgaar_receiver.delivery.dedupe import RedisDedupeStore
from yalgaar_receiver.presence import PresenceTracker, RedisPresenceStore

log = logging.getLogger("production_app")


def create_app() -> Flask:
    """Build the app from the environment; fails at start-up when a setting cannot work."""
    app = Flask(__name__)
    app.config["YALGAAR_CLIENT_KEYS"] = os.environ.get("YALGAAR_CLIENT_KEYS", "")
    for key in ("YALGAAR_URL_TOKENS", "YALGAAR_TRUSTED_PROXIES", "YALGAAR_ALLOWED_NETWORKS"):
        if os.environ.get(key):
            app.config[key] = os.environ[key]

    dedupe = None
    client = None
    if os.environ.get("YALGAAR_REDIS_URL"):
        import redis  # only this deployment needs it: pip install yalgaar-receiver[redis]

        client = redis.Redis.from_url(
            os.environ["YALGAAR_REDIS_URL"], socket_timeout=2, socket_connect_timeout=2
        )
        lease = float(os.environ.get("YALGAAR_DEDUPE_LEASE", "60"))
        dedupe = RedisDedupeStore(client, lease=lease)
    receiver = Receiver(dedupe=dedupe)
    tracker = None
    if os.environ.get("YALGAAR_PRESENCE_STATE") == "1":
        if client is None:
            raise RuntimeError("YALGAAR_PRESENCE_STATE=1 keeps the state in YALGAAR_REDIS_URL.")
        tracker = PresenceTracker(receiver, store=RedisPresenceStore(client))

    @receiver.on_presence
    def presence(event: PresenceEvent) -> None:
        # %r, not %s: a channel name is the sender's text (docs/security.md, "Logs").
        log.info("%r %s on %r", event.uuid, event.action.value, event.channel)

    @receiver.on_message
    def message(event: MessageEvent) -> None:
        log.info("%r published %d characters on %r", event.uuid, len(event.message), event.channel)

    app.register_blueprint(create_blueprint(receiver), url_prefix="/yalgaar")
    if os.environ.get("YALGAAR_METRICS") == "1":
        serve_metrics(app, receiver, tracker)
    if os.environ.get("YALGAAR_TRACING") == "1":
        from yalgaar_receiver import tracing

        tracing.instrument(receiver)
    return app


def serve_metrics(app: Flask, receiver: Receiver, tracker: PresenceTracker | None) -> None:
    """Count the receiver's work and answer ``GET /metrics`` to the metrics networks only."""
    from yalgaar_receiver import metrics

    instruments = metrics.instrument(receiver, tracker=tracker)
    networks = [
        ipaddress.ip_network(network.strip())
        for network in os.environ.get("YALGAAR_METRICS_NETWORKS", "127.0.0.1/32,::1/128").split(",")
    ]

    @app.get("/metrics")
    def scrape() -> Response:
        # remote_addr is the socket's peer here: the scraper talks to gunicorn directly.
        address = ipaddress.ip_address(request.remote_addr or "0.0.0.0")
        if not any(address in network for network in networks):
            abort(404)  # as if there were nothing here
        body, content_type = instruments.exposition()
        return Response(body, content_type=content_type)
