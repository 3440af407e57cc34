"""An app factory: keys from configuration, handlers registered inside ``create_app``.

The receiver gets no keys of its own, so the blueprint reads ``YALGAAR_CLIENT_KEYS`` from the
app's config (here from the environment, comma-separated, so a key can be rotated by listing the
old and the new one). Handlers defined inside the factory stay registered: the decorators hold
them strongly.

Run it with::

    YALGAAR_CLIENT_KEYS=ck-0123456789abcdef YALGAAR_URL_TOKENS=$(openssl rand -hex 24) \
        flask --app 'examples.factory_app:create_app()' run

and give Yalgaar ``https://host/webhooks/yalgaar/<token>/presence`` (see docs/security.md).
"""

from __future__ import annotations

import logging
import os
import typing as t

from flask import Flask

from yalgaar_receiver import Event, MessageEvent, PresenceEvent, Receiver, create_blueprint

log = logging.getLogger("factory_app")


def create_app(config: t.Mapping[str, t.Any] | None = None) -> Flask:
    """Build the app; ``config`` overrides what the environment says."""
    app = Flask(__name__)
    app.config["YALGAAR_CLIENT_KEYS"] = os.environ.get("YALGAAR_CLIENT_KEYS", "")
    # The secret in the webhook URL (docs/security.md); without it the app warns at start-up.
    app.config["YALGAAR_URL_TOKENS"] = os.environ.get("YALGAAR_URL_TOKENS")
    app.config.update(config or {})

    receiver = Receiver()
    # Where a real app would write to its database; kept on the app for the smoke test.
    seen: list[Event] = []
    app.extensions["seen_events"] = seen

    @receiver.on_presence
    def presence(event: PresenceEvent) -> None:
        log.info("%s %s on %s", event.uuid, event.action.value, event.channel)
        seen.append(event)

    @receiver.on_message(channel="chat-*")
    def chat(event: MessageEvent) -> None:
        body = event.json(default=event.message)  # plain text is allowed too
        log.info("%s said %r on %s", event.uuid, body, event.channel)
        seen.append(event)

    app.register_blueprint(create_blueprint(receiver), url_prefix="/webhooks/yalgaar")
    return app
