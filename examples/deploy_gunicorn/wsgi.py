"""The WSGI app that gunicorn serves: a receiver configured from the environment.

From the repository root::

    export YALGAAR_CLIENT_KEYS=ck-0123456789abcdef \\
        YALGAAR_URL_TOKENS=$(python -c "import secrets; print(secrets.token_urlsafe(32))")
    gunicorn -c examples/deploy_gunicorn/gunicorn_conf.py \\
        'examples.deploy_gunicorn.wsgi:create_app()'

and give Yalgaar ``https://your-host/yalgaar/<token>/presence`` and ``.../<token>/message``:
``clientKey`` ships inside every client app, so the secret in the URL is what keeps strangers out
(docs/security.md). In your own project the last argument names your factory, such as
``'myapp:create_app()'``. gunicorn calls it in each worker as it boots, and the worker fails to
boot when no key or no token is configured, so a misconfigured deployment never starts.
"""

from __future__ import annotations

import logging
import os

from flask import Flask

from yalgaar_receiver import (
    ConfigurationError,
    MessageEvent,
    PresenceEvent,
    Receiver,
    create_blueprint,
)

log = logging.getLogger("yalgaar_example")


def create_app() -> Flask:
    """Build the app from ``YALGAAR_CLIENT_KEYS`` and ``YALGAAR_URL_TOKENS`` (comma-separated,
    so that a key or a token can be rotated by listing the old and the new one).

    :raises ConfigurationError: either setting is missing.
    """
    app = Flask(__name__)
    for setting in ("YALGAAR_CLIENT_KEYS", "YALGAAR_URL_TOKENS"):
        if setting in os.environ:
            app.config[setting] = os.environ[setting]
    if not app.config.get("YALGAAR_URL_TOKENS"):
        # A deployment refuses to start unprotected rather than warn in a log nobody reads.
        raise ConfigurationError(
            "YALGAAR_URL_TOKENS is not set: generate a secret (secrets.token_urlsafe(32)), set it, "
            "and give Yalgaar https://your-host/yalgaar/<token>/presence and .../message."
        )
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
