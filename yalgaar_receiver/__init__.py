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

This module is the public API. Each name is imported from its module on first use (PEP 562),
so ``import yalgaar_receiver`` imports no more of the package than this file and its version:
it works where Flask cannot be imported, and the pytest plugin, which pytest imports in every
run of the environment (other projects' runs included), costs about a millisecond.
"""

from __future__ import annotations

import importlib
import importlib.util
import typing as t

from ._version import __version__ as __version__

if t.TYPE_CHECKING:
    from . import signals as signals
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
    from .flask.blueprint import create_blueprint as create_blueprint
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
    "UnsupportedEncodingError",
    "YalgaarError",
    "YalgaarSecurityWarning",
    "create_blueprint",
    "parse_envelope",
    "signals",
]

#: Where each public name is defined: its module, relative to this package.
_MODULES: t.Final[dict[str, str]] = {
    "signals": "signals",  # the module itself
    "Dispatcher": "delivery.dispatch",
    "InlineDispatcher": "delivery.dispatch",
    "ThreadPoolDispatcher": "delivery.threads",
    "Batch": "events",
    "BindEvent": "events",
    "Event": "events",
    "HandlerFailure": "events",
    "MessageEvent": "events",
    "Outcome": "events",
    "PresenceAction": "events",
    "PresenceEvent": "events",
    "Rejection": "events",
    "UnbindEvent": "events",
    "UnknownEvent": "events",
    "AuthenticationError": "exceptions",
    "ConfigurationError": "exceptions",
    "DispatchUnavailableError": "exceptions",
    "InvalidEnvelopeError": "exceptions",
    "PayloadTooLargeError": "exceptions",
    "UnsupportedEncodingError": "exceptions",
    "YalgaarError": "exceptions",
    "YalgaarSecurityWarning": "exceptions",
    "parse_envelope": "parsing",
    "Receiver": "receiver",
    "create_blueprint": "flask.blueprint",
}


def __getattr__(name: str) -> t.Any:
    module = _MODULES.get(name)
    if module is None:
        # A submodule, as attribute access found the core's modules when this file imported
        # them up front (yalgaar_receiver.events after a bare import yalgaar_receiver).
        if name.startswith("__") or importlib.util.find_spec(f"{__name__}.{name}") is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        return importlib.import_module(f".{name}", __name__)
    found = importlib.import_module(f".{module}", __name__)
    value = found if name == module else getattr(found, name)
    globals()[name] = value  # looked up here once; the module's own attribute from then on
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
