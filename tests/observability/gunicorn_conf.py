"""gunicorn hooks for the metrics test: the example production app runs unchanged.

Each worker gets a subscriber that fails on a poison message (so that handler failures and dead
letters move) and names itself in an answer header (so that the test knows both workers served
traffic); a worker that exits is marked dead for prometheus_client's multi-process files.
"""

from __future__ import annotations

import os
import typing as t

from flask import Flask, Response
from prometheus_client import multiprocess

from yalgaar_receiver import MessageEvent, signals


def poisoned(sender: object, event: MessageEvent, **extra: object) -> None:
    if event.message == "poison":
        raise ValueError("the test's poison message")


def post_worker_init(worker: t.Any) -> None:
    signals.message.connect(poisoned, weak=False)
    app: Flask = worker.wsgi

    @app.after_request
    def name_the_worker(response: Response) -> Response:
        response.headers["X-Worker-Pid"] = str(os.getpid())
        return response


def child_exit(server: t.Any, worker: t.Any) -> None:
    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


control_socket_disable = True
