"""The pytest plugin of ``yalgaar-receiver``: fixtures to test your own webhook handlers.

Installed with the package and loaded by pytest through the ``pytest11`` entry point, so the
fixtures are there in every test without a ``conftest.py`` line:

* ``yalgaar_client``: a :class:`~yalgaar_receiver.flask.WebhookClient` for your Flask app,
  which it takes from your ``app`` fixture (override ``yalgaar_app`` to take it elsewhere);
* ``yalgaar_events``: a :class:`~yalgaar_receiver.testing.Capture` of what every receiver does
  during the test.

pytest imports every installed plugin in every run of the environment, other projects' tests
included, so this module imports pytest and nothing else up front (the package's own
``__init__``, which Python imports to reach it, imports each public name on first use); the
test client and the kit are imported when a fixture is used. The plugin adds fixtures and
nothing else: no hooks, no options, no markers.
"""

from __future__ import annotations

import typing as t

import pytest

if t.TYPE_CHECKING:
    from flask import Flask

    from .flask.client import WebhookClient
    from .testing import Capture

__all__ = ["yalgaar_app", "yalgaar_client", "yalgaar_events"]


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
    from .flask.client import WebhookClient

    return WebhookClient(yalgaar_app)


@pytest.fixture
def yalgaar_events() -> t.Iterator[Capture]:
    """Records what every receiver does during the test, in order: events, rejected items,
    refused requests, handler failures and skipped duplicates."""
    from .testing import capture_events

    with capture_events() as capture:
        yield capture
