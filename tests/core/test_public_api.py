"""The public names are a promise: adding or removing one is a deliberate change."""

from __future__ import annotations

import yalgaar_receiver
from yalgaar_receiver import schemas, signals


def test_top_level_names() -> None:
    assert yalgaar_receiver.__all__ == [
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
    for name in yalgaar_receiver.__all__:
        assert getattr(yalgaar_receiver, name) is not None


def test_schema_names() -> None:
    assert {"EnvelopeSchema", "PresenceItemSchema", "MessageItemSchema"} <= set(schemas.__all__)


def test_every_exception_derives_from_the_base() -> None:
    errors = [
        getattr(yalgaar_receiver, name)
        for name in yalgaar_receiver.__all__
        if name.endswith("Error")
    ]
    assert errors and all(issubclass(e, yalgaar_receiver.YalgaarError) for e in errors)
    assert issubclass(yalgaar_receiver.InvalidEnvelopeError, ValueError)


def test_signals_live_in_the_package_namespace() -> None:
    from blinker import signal as default_signal

    assert signals.bind is not default_signal("bind")


def test_auth_names() -> None:
    from yalgaar_receiver import auth

    assert auth.__all__ == [
        "SETTINGS",
        "TOKEN_PARAMETER",
        "RequestAuth",
        "RequestView",
        "client_address",
    ]
