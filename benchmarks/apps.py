"""The two WSGI apps the HTTP benchmark drives with gunicorn: the floor and the receiver.

``apps:make_floor()`` is the least a Flask app can do with a webhook: read the JSON body, answer
204. ``apps:make_receiver()`` is the real blueprint, with one no-op subscriber on every signal of
:mod:`yalgaar_receiver.signals` and one no-op decorated handler per event kind, answering the
JSON summary a real deployment answers.
"""

from __future__ import annotations

import typing as t

import envelopes
from flask import Flask, request

from yalgaar_receiver import Receiver, create_blueprint, signals


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


def make_receiver() -> Flask:
    """The receiver's blueprint under ``/yalgaar``, with no-op handlers and subscribers."""
    receiver = Receiver(client_keys=[envelopes.CLIENT_KEY])
    for decorator in (
        receiver.on_bind,
        receiver.on_unbind,
        receiver.on_presence,
        receiver.on_message,
        receiver.on_unknown,
    ):
        decorator(_noop)
    for name in sorted(vars(signals)):
        signal = getattr(signals, name)
        if hasattr(signal, "receivers_for"):
            signal.connect(_noop, weak=False)
    app = Flask("receiver")
    app.register_blueprint(create_blueprint(receiver), url_prefix="/yalgaar")
    return app
