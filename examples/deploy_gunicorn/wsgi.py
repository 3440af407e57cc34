"""The WSGI app that gunicorn serves: a receiver configured from the environment.

From the repository root::

    YALGAAR_CLIENT_KEYS=ck-0123456789abcdef gunicorn \\
        -c examples/deploy_gunicorn/gunicorn_conf.py 'examples.deploy_gunicorn.wsgi:create_app()'

In your own project the last argument names your factory, such as ``'myapp:create_app()'``.
gunicorn calls it in each worker as it boots, and the worker fails to boot when no key is
configured, so a misconfigured deployment never starts answering 403 to every webhook.
"""

from __future__ import annotations

import logging
import os

from flask import Flask

from yalgaar_receiver import MessageEvent, PresenceEvent, Receiver, create_blueprint

log = logging.getLogger("yalgaar_example")


def create_app() -> Flask:
    """Build the app; the client keys come from ``YALGAAR_CLIENT_KEYS`` (comma-separated)."""
    app = Flask(__name__)
    if "YALGAAR_CLIENT_KEYS" in os.environ:
        app.config["YALGAAR_CLIENT_KEYS"] = os.environ["YALGAAR_CLIENT_KEYS"]
    receiver = Receiver()

    @receiver.on_presence
    def presence(event: PresenceEvent) -> None:
        # A real app would update its database here; handlers run inside the request, so they
        # must be quick (Yalgaar sends the next batch two seconds later).
        log.info("presence: %s %s %s", event.uuid, event.action.value, event.channel)

    @receiver.on_message
    def message(event: MessageEvent) -> None:
        log.info("message: %s on %s: %d characters", event.uuid, event.channel, len(event.message))

    app.register_blueprint(create_blueprint(receiver), url_prefix="/yalgaar")
    return app
