"""The Flask adapter: the blueprint, request-level authentication and the test client.

* :func:`create_blueprint` builds the blueprint that receives webhooks for a
  :class:`~yalgaar_receiver.Receiver`, and chooses every HTTP status code;
* :func:`blueprint_settings` gives what a registered blueprint resolved for its app
  (:class:`BlueprintSettings`);
* :class:`RequestAuth` and :class:`RequestView` are the authentication layers beyond
  ``clientKey`` (in :mod:`~yalgaar_receiver.flask.auth`, which imports no Flask);
* :class:`WebhookClient` posts bodies to an app under test.

This room is the end of the flow: the HTTP answer. Nothing before it imports it, and
``import yalgaar_receiver`` does not import it until ``create_blueprint`` is first used.
"""

from __future__ import annotations

from .auth import RequestAuth as RequestAuth
from .auth import RequestView as RequestView
from .auth import client_address as client_address
from .blueprint import BlueprintSettings as BlueprintSettings
from .blueprint import blueprint_settings as blueprint_settings
from .blueprint import create_blueprint as create_blueprint
from .client import WebhookClient as WebhookClient

__all__ = [
    "BlueprintSettings",
    "RequestAuth",
    "RequestView",
    "WebhookClient",
    "blueprint_settings",
    "client_address",
    "create_blueprint",
]
