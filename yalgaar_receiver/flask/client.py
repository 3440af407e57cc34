"""``WebhookClient``: post webhook bodies to a Flask app under test, as Yalgaar would.

Imports: Flask (through the app it is given), the test kit's payloads, and the room's blueprint
settings.
"""

from __future__ import annotations

import json
import typing as t
import urllib.parse

from flask import Flask
from werkzeug.test import TestResponse

from .. import wire
from ..testing import Payload
from .blueprint import blueprint_settings

__all__ = ["WebhookClient"]


class WebhookClient:
    """Posts webhook bodies to a Flask app under test, as Yalgaar would.

    The URL comes from the blueprint's settings
    (:func:`~yalgaar_receiver.flask.blueprint_settings`): a *Presence* body goes to its
    ``/presence`` route and a *Message* body to ``/message`` (the two URLs of the Yalgaar
    dashboard), anything else to its ``/`` route. When the blueprint takes URL
    tokens (``YALGAAR_URL_TOKENS``), the URL carries its first token
    (``/yalgaar/<token>/presence``), as the URL given to Yalgaar would. With several receiver
    blueprints, name one.

    :param app: the Flask app with a blueprint from :func:`~yalgaar_receiver.create_blueprint`.
    :param blueprint: the name the blueprint was registered under, when the app has more than
        one.
    :param token: the URL token to post with; by default the blueprint's first one, if any.
        ``""`` posts without a token (to test that such a request is refused).
    """

    def __init__(
        self, app: Flask, *, blueprint: str | None = None, token: str | None = None
    ) -> None:
        self.app = app
        self.blueprint = blueprint
        self.token = token
        self._client = app.test_client()

    def url_for(
        self,
        source: str | None = None,
        *,
        blueprint: str | None = None,
        token: str | None = None,
    ) -> str:
        """The path Yalgaar would post a body of ``source`` (``"presence"``, ``"message"`` or
        ``None``) to; ``blueprint`` and ``token`` as in the constructor.

        :raises LookupError: the app has no such blueprint, or several and none was named.
        """
        found = blueprint_settings(self.app, blueprint or self.blueprint)
        endpoint = found.endpoints.get(source, found.endpoints[None])
        if token is None:
            token = self.token
        if token is None:
            token = found.auth.url_tokens[0] if found.auth.url_tokens else ""
        if not token:
            return self._rule(endpoint)
        # Quoted whole, "/" included: a token is one path segment.
        return self._rule(endpoint + "_token").replace("<token>", urllib.parse.quote(token, ""))

    def _rule(self, endpoint: str) -> str:
        return next(self.app.url_map.iter_rules(endpoint)).rule

    def post(
        self,
        body: t.Mapping[str, t.Any] | bytes | str,
        *,
        url: str | None = None,
        blueprint: str | None = None,
        token: str | None = None,
        headers: t.Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> TestResponse:
        """Post one body and return the response.

        :param body: a :class:`~yalgaar_receiver.testing.Payload` (or any JSON-ready mapping),
            or the raw bytes or text.
        :param url: post here instead of the route found for the body's ``source``.
        :param headers: extra headers, such as ``Authorization`` for Basic credentials.
        """
        if isinstance(body, bytes):
            data = body
        elif isinstance(body, str):
            data = body.encode("utf-8")
        else:
            data = Payload(body).to_bytes()
        if url is None:
            url = self.url_for(_source_of(data), blueprint=blueprint, token=token)
        return self._client.post(
            url, data=data, headers=dict(headers or {}), content_type=content_type
        )


def _source_of(data: bytes) -> str | None:
    """The source of a body that is one documented envelope, else ``None``."""
    try:
        document = json.loads(data)
    except ValueError:
        return None
    envelope = document.get("items") if isinstance(document, dict) else None
    source = envelope.get("source") if isinstance(envelope, dict) else None
    if isinstance(source, str):
        return wire.SOURCES.get(source.strip().casefold())
    return None
