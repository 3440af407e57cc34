"""The pytest plugin of ``yalgaar-receiver``: fixtures to test your own webhook handlers.

Installed with the package and loaded by pytest through the ``pytest11`` entry point, so the
fixtures are there in every test without a ``conftest.py`` line:

* ``yalgaar_client``: a :class:`WebhookClient` for your Flask app,
  which it takes from your ``app`` fixture (override ``yalgaar_app`` to take it elsewhere);
* ``yalgaar_events``: a :class:`~yalgaar_receiver.testing.Capture` of what every receiver does
  during the test.

It lives outside the ``yalgaar_receiver`` package because pytest imports it in every run of the
environment, tests of other projects included: importing the package would import Flask and
marshmallow each time. Here only pytest is imported up front; the kit is imported when a fixture
is used. The plugin adds fixtures and nothing else: no hooks, no options, no markers.
"""

from __future__ import annotations

import json
import typing as t
import urllib.parse

import pytest

if t.TYPE_CHECKING:
    from flask import Flask
    from werkzeug.test import TestResponse

    from yalgaar_receiver.testing import Capture

__all__ = ["WebhookClient", "yalgaar_app", "yalgaar_client", "yalgaar_events"]


@pytest.fixture
def yalgaar_app(request: pytest.FixtureRequest) -> Flask:
    """The Flask app that ``yalgaar_client`` posts to: your ``app`` fixture by default."""
    try:
        app: Flask = request.getfixturevalue("app")
    except pytest.FixtureLookupError:
        pytest.fail(
            "yalgaar_client needs your Flask app: define a fixture named 'app' that returns it, "
            "or override the 'yalgaar_app' fixture.",
            pytrace=False,
        )
    return app


@pytest.fixture
def yalgaar_client(yalgaar_app: Flask) -> WebhookClient:
    """Posts webhook bodies to the app under test and returns the response."""
    return WebhookClient(yalgaar_app)


@pytest.fixture
def yalgaar_events() -> t.Iterator[Capture]:
    """Records what every receiver does during the test, in order: events, rejected items,
    refused requests, handler failures and skipped duplicates."""
    from yalgaar_receiver.testing import capture_events

    with capture_events() as capture:
        yield capture


# -- posting to a Flask app ------------------------------------------------------------------

# The routes create_blueprint() adds, by endpoint name, for the source each one stands for.
_ROUTE_FOR_SOURCE: t.Final = {"presence": "presence", "message": "message", None: "webhook"}
_BLUEPRINT_MODULE: t.Final = "yalgaar_receiver.blueprint"
#: Where the blueprint keeps what it resolved for an app: ``app.extensions[...][name].auth``.
_SETTINGS_EXTENSION: t.Final = "yalgaar_receiver"


class WebhookClient:
    """Posts webhook bodies to a Flask app under test, as Yalgaar would.

    The URL is found in the app's URL map: a *Presence* body goes to the blueprint's
    ``/presence`` route and a *Message* body to ``/message`` (the two URLs of the Yalgaar
    dashboard), anything else to its ``/`` route. When the blueprint takes URL tokens
    (``YALGAAR_URL_TOKENS``), the URL carries its first token (``/yalgaar/<token>/presence``),
    as the URL given to Yalgaar would. With several receiver blueprints, name one.

    :param app: the Flask app with a blueprint from :func:`~yalgaar_receiver.create_blueprint`.
    :param blueprint: the name of the blueprint to post to (its ``name=``), when the app has
        more than one.
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
        name = blueprint or self.blueprint
        routes: dict[str, dict[str, str]] = {}
        for rule in self.app.url_map.iter_rules():
            view = self.app.view_functions.get(rule.endpoint)
            if getattr(view, "__module__", None) != _BLUEPRINT_MODULE or "." not in rule.endpoint:
                continue
            owner, route = rule.endpoint.rsplit(".", 1)
            routes.setdefault(owner, {}).setdefault(route, rule.rule)
        if not routes:
            raise LookupError(
                "The app has no Yalgaar receiver blueprint; register "
                "create_blueprint(receiver) on it first."
            )
        if name is None:
            if len(routes) > 1:
                raise LookupError(
                    f"The app has several receiver blueprints ({', '.join(sorted(routes))}); "
                    "pass blueprint=NAME to say which one to post to."
                )
            name = next(iter(routes))
        if name not in routes:
            raise LookupError(
                f"The app has no receiver blueprint named {name!r}; "
                f"it has {', '.join(sorted(routes))}."
            )
        route = _ROUTE_FOR_SOURCE.get(source, "webhook")
        token = self._token(name) if token is None else token
        if not token:
            return routes[name][route]
        return routes[name][f"{route}_token"].replace("<token>", urllib.parse.quote(token, ""))

    def _token(self, name: str) -> str:
        if self.token is not None:
            return self.token
        # The request-level settings the blueprint resolved when it was registered. A private
        # layout, read defensively; tests/test_pytest_plugin.py fails if it moves out of reach.
        entry = self.app.extensions.get(_SETTINGS_EXTENSION, {}).get(name)
        tokens = getattr(getattr(entry, "auth", None), "url_tokens", None)
        return str(tokens[0]) if tokens else ""

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

        :param body: a :class:`Payload` (or any JSON-ready mapping), or the raw bytes or text.
        :param url: post here instead of the route found for the body's ``source``.
        :param headers: extra headers, such as ``Authorization`` for Basic credentials.
        """
        if isinstance(body, bytes):
            data = body
        elif isinstance(body, str):
            data = body.encode("utf-8")
        else:
            from yalgaar_receiver.testing import Payload

            data = Payload(body).to_bytes()
        if url is None:
            url = self.url_for(_source_of(data), blueprint=blueprint, token=token)
        return self._client.post(
            url, data=data, headers=dict(headers or {}), content_type=content_type
        )


def _source_of(data: bytes) -> str | None:
    """``"presence"`` or ``"message"`` when the body is one documented envelope, else ``None``."""
    try:
        document = json.loads(data)
    except ValueError:
        return None
    envelope = document.get("items") if isinstance(document, dict) else None
    source = envelope.get("source") if isinstance(envelope, dict) else None
    if isinstance(source, str) and source.strip().casefold() in ("presence", "message"):
        return source.strip().casefold()
    return None
