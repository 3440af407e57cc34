"""Receive Yalgaar webhooks in Flask: typed events, decorators, blinker signals.

Layering, enforced by ``tests/test_layering.py``:

* ``blueprint`` is the only module that imports Flask or Werkzeug; everything that reads,
  validates and dispatches (``receiver``, ``parsing``, ``schemas``, ``wire``, ``routing``,
  ``dispatch``, ``events``, ``signals``, ``exceptions``) works without a web framework, and so
  do the request-level authentication checks in ``auth``, which the blueprint feeds. The
  command line (``cli``), an application built on the package, imports Flask and Werkzeug too,
  and it alone imports click.
* ``schemas`` is the only module that imports marshmallow.
* Data flows one way: bytes -> envelopes -> events -> handlers -> outcome -> HTTP answer; no module
  imports one that comes after it in that line.

Later rooms (background dispatchers, stores, the presence tracker, the test kit, the command
line) plug into :class:`Receiver` through small interfaces and follow the same rules.
"""

from __future__ import annotations

from . import signals as signals
from .blueprint import create_blueprint as create_blueprint
from .dispatch import Dispatcher as Dispatcher
from .dispatch import InlineDispatcher as InlineDispatcher
from .dispatch import ThreadPoolDispatcher as ThreadPoolDispatcher
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
from .exceptions import YalgaarError as YalgaarError
from .exceptions import YalgaarSecurityWarning as YalgaarSecurityWarning
from .parsing import parse_envelope as parse_envelope
from .receiver import Receiver as Receiver

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
    "YalgaarError",
    "YalgaarSecurityWarning",
    "create_blueprint",
    "parse_envelope",
    "signals",
]

__version__ = "0.1.0"
