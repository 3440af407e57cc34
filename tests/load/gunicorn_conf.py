"""gunicorn hooks for the load suite: count what each worker handles into the shared Redis.

The example app runs unchanged; these hooks connect counting subscribers to the package's
signals in every worker after it loaded the app. A subscriber runs inside ``Receiver.emit``,
after the claim of the de-duplication store and before ``done``, exactly like a handler.
"""

from __future__ import annotations

import os
import typing as t

import redis

from yalgaar_receiver import Event, Rejection, signals


def post_worker_init(worker: t.Any) -> None:
    store = redis.Redis.from_url(os.environ["LOAD_REDIS_URL"])
    pid = str(os.getpid())

    def handled(sender: object, event: Event, **extra: object) -> None:
        # One field per event id (its uuid): a value above 1 is a doubly handled event.
        store.hincrby("load:runs", str(event.uuid), 1)
        store.hincrby("load:by-worker", pid, 1)

    def rejected(sender: object, rejection: Rejection, **extra: object) -> None:
        store.incr("load:rejected")

    def duplicate(sender: object, event: Event, **extra: object) -> None:
        store.incr("load:duplicates")

    signals.presence.connect(handled, weak=False)
    signals.message.connect(handled, weak=False)
    signals.event_rejected.connect(rejected, weak=False)
    signals.duplicate_event.connect(duplicate, weak=False)
    store.sadd("load:workers", pid)


# gunicorn 25.1 and later open a control socket in the home directory by default; a test leaves
# nothing behind. (Older versions ignore the unknown setting.)
control_socket_disable = True
