"""The former path of the pytest plugin and its ``WebhookClient``.

The plugin is :mod:`yalgaar_receiver.pytest_plugin` (loaded through the ``pytest11`` entry point);
``pytest_yalgaar.WebhookClient`` keeps working and is :class:`yalgaar_receiver.flask.WebhookClient`.
"""

from __future__ import annotations

from yalgaar_receiver.flask.client import WebhookClient as WebhookClient

__all__ = ["WebhookClient"]
