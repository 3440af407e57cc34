"""The deployment that ``make bench``'s throughput figure drives (``throughput.py``).

gunicorn serves ``pipeline:make_app()``; a Celery worker runs ``pipeline:celery_app``. Both
build the same receiver: a no-op handler per event signal, ``CeleryDispatcher`` in the mode
``BENCH_MODE`` names (``event`` or ``envelope``), de-duplication in a ``RedisDedupeStore`` and,
on the worker, a ``PresenceTracker`` on a ``RedisPresenceStore``, as ``docs/delivery.md``
advises for presence with Celery. The broker is one Redis (``BENCH_BROKER_URL``), the stores
another (``BENCH_STORE_URL``), so that each one's CPU time can be read apart.

``floor`` is the floor's task: a bare Celery task on the same broker and queue, which does
nothing but count itself (one ``INCR`` on the stores' Redis), so that the driver knows when
every task has run.
"""

from __future__ import annotations

import os
import typing as t

import envelopes
import redis
from celery import Celery
from flask import Flask

from yalgaar_receiver import Receiver, create_blueprint
from yalgaar_receiver.delivery import RedisDedupeStore
from yalgaar_receiver.delivery.celery import CeleryDispatcher
from yalgaar_receiver.presence import PresenceTracker, RedisPresenceStore

BROKER_URL = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/0")
STORE_URL = os.environ.get("BENCH_STORE_URL", BROKER_URL)
MODE = os.environ.get("BENCH_MODE", "event")
QUEUE = "bench"
#: What the floor's tasks count themselves in.
FLOOR_COUNTER = "bench:floor"
PRESENCE_PREFIX = "bench:presence:"

celery_app = Celery("yalgaar_bench", broker=BROKER_URL)
celery_app.conf.update(
    # The settings examples/celery_app.py recommends, for the floor's task as well.
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    task_ignore_result=True,
    worker_hijack_root_logger=False,
)
stores = redis.Redis.from_url(STORE_URL, socket_connect_timeout=2, socket_timeout=10)


# shared=False: only this app has the task, not every Celery app the process makes later.
@celery_app.task(name="bench.floor", acks_late=True, ignore_result=True, shared=False)
def floor() -> None:
    """The floor: a task that only counts itself."""
    stores.incr(FLOOR_COUNTER)


def _noop(*args: t.Any, **kwargs: t.Any) -> None:
    """Stands for an application's handler; does nothing, so only the pipeline is measured."""


receiver = Receiver(
    client_keys=[envelopes.CLIENT_KEY],
    dispatcher=CeleryDispatcher(celery_app, queue=QUEUE, mode=MODE),
    dedupe=RedisDedupeStore(stores, prefix="bench:dedupe:"),
)
for _decorator in (receiver.on_bind, receiver.on_unbind, receiver.on_presence):
    _decorator(_noop)

if os.environ.get("BENCH_ROLE") == "worker":
    # The presence state is kept on the workers: the web process runs no handler.
    tracker = PresenceTracker(
        receiver, store=RedisPresenceStore(stores, prefix=PRESENCE_PREFIX), sweep_interval=None
    )


def make_app() -> Flask:
    """The web side: the blueprint under ``/yalgaar``, protected by the client key."""
    app = Flask("pipeline")
    app.register_blueprint(
        create_blueprint(receiver, allow_client_key_only=True), url_prefix="/yalgaar"
    )
    return app
