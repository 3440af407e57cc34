"""Receive Yalgaar webhooks in Flask: typed events, decorators, blinker signals.

The package is built in rooms that follow the data, bytes -> envelopes -> events -> handlers ->
outcome -> HTTP answer, and no module imports one that comes later (``docs/architecture.md`` draws
the tree; ``tests/core/test_layering.py`` checks every import):

* the core: ``exceptions``, ``events``, ``signals``, ``settings``, ``wire``, ``schemas``,
  ``parsing``, ``routing``, and ``receiver``, which assembles the outcome; none of it imports Flask;
* ``delivery``: when and where handlers run (inline, threads, Celery), de-duplication, dead
  letters, replay; the receiver takes these through small interfaces;
* ``presence``: who is in which channel, kept from the receiver's signals;
* ``testing``: builders of what Yalgaar sends, and a capture of what a receiver does;
* ``flask``: the blueprint (the one place that chooses status codes), request-level
  authentication and the test client;
* ``cli``: the ``yalgaar-receiver`` command.

This module is the public API. ``create_blueprint`` is reached lazily, so ``import
yalgaar_receiver`` works where Flask cannot be imported.
"""

from __future__ import annotations

import typing as t

from . import signals as signals
from ._version import __version__ as __version__
from .delivery.dispatch import Dispatcher as Dispatcher
from .delivery.dispatch import InlineDispatcher as InlineDispatcher
from .delivery.threads import ThreadPoolDispatcher as ThreadPoolDispatcher
from .events import Batch as Batch
from .events import BindEvent as BindEvent
from .events import Event as Event
from .events import HandlerFailure as HandlerFailure
from .events import MessageEvent as MessageEvent
from .events import Outcome as Outcome
from .events import PresenceAction as PresenceAction
from .events import PresenceEvent as PresenceEvent
from .events import Rejection as Rejection
from .events import UnbindEvent as UnbindEvent
from .events import UnknownEvent as UnknownEvent
from .exceptions import AuthenticationError as AuthenticationError
from .exceptions import ConfigurationError as ConfigurationError
from .exceptions import DispatchUnavailableError as DispatchUnavailableError
from .exceptions import InvalidEnvelopeError as InvalidEnvelopeError
from .exceptions import PayloadTooLargeError as PayloadTooLargeError
from .exceptions import UnsupportedEncodingError as UnsupportedEncodingError
from .exceptions import YalgaarError as YalgaarError
from .exceptions import YalgaarSecurityWarning as YalgaarSecurityWarning
from .parsing import parse_envelope as parse_envelope
from .receiver import Receiver as Receiver

if t.TYPE_CHECKING:
    from .flask.blueprint import create_blueprint as create_blueprint

__all__ = [
    "AuthenticationError",
    "Batch",
    "BindEvent",
    "ConfigurationError",
    "DispatchUnavailableError",
    "Dispatcher",
    "Event",
    "HandlerFailure",
    "InlineDispatcher",
    "InvalidEnvelopeError",
    "MessageEvent",
    "Outcome",
    "PayloadTooLargeError",
    "PresenceAction",
    "PresenceEvent",
    "Receiver",
    "Rejection",
    "ThreadPoolDispatcher",
    "UnbindEvent",
    "UnknownEvent",
    "UnsupportedEncodingError",
    "YalgaarError",
    "YalgaarSecurityWarning",
    "create_blueprint",
    "parse_envelope",
    "signals",
]


def __getattr__(name: str) -> t.Any:
    # The Flask adapter is imported on first use, not with the package (PEP 562).
    if name == "create_blueprint":
        from .flask.blueprint import create_blueprint

        return create_blueprint
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
