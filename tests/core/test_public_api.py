"""The public names are a promise: adding or removing one is a deliberate change.

Each room's ``__all__`` is pinned here, and so are the former paths of the modules that moved.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import subprocess
import sys

import pytest

import yalgaar_receiver
from yalgaar_receiver import signals

PUBLIC = {
    "yalgaar_receiver": [
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
    ],
    "yalgaar_receiver.schemas": [
        "EnvelopeSchema",
        "ItemSchema",
        "MessageItemSchema",
        "PresenceItemSchema",
        "WireField",
        "envelope_json_schema",
    ],
    "yalgaar_receiver.settings": [
        "PREFIX",
        "Secrets",
        "choice",
        "config_key",
        "count",
        "flag",
        "positive_int",
        "positive_number",
        "resolve",
        "text_list",
    ],
    "yalgaar_receiver.parsing": ["LOADERS", "Envelope", "Parser", "batch_of", "parse_envelope"],
    "yalgaar_receiver.encryption": ["KEY_SIZES", "UNDECRYPTABLE", "MessageKeys"],
    "yalgaar_receiver.payloads": ["MessageDecorator", "load_payload"],
    "yalgaar_receiver.routing": [
        "ISOLATED",
        "Decorator",
        "Filter",
        "Matcher",
        "Registry",
        "Route",
        "compile_filter",
        "compile_filters",
        "deliver",
        "handler_name",
        "listened",
        "notify",
        "observed",
    ],
    "yalgaar_receiver.delivery": [
        "Claim",
        "ClaimState",
        "DeadLetter",
        "DeadLetterSink",
        "DedupeStore",
        "Dispatcher",
        "InlineDispatcher",
        "JsonLinesDeadLetterSink",
        "MemoryDedupeStore",
        "RedisDeadLetterSink",
        "RedisDedupeStore",
        "ReplayReport",
        "ThreadPoolDispatcher",
        "event_key",
        "replay",
    ],
    "yalgaar_receiver.delivery.dispatch": [
        "Dispatcher",
        "Emit",
        "Emitter",
        "Flush",
        "InlineDispatcher",
        "Unit",
        "defer",
    ],
    "yalgaar_receiver.presence": [
        "BatchPresenceStore",
        "ChangeKind",
        "MemoryPresenceStore",
        "PresenceChange",
        "PresenceRules",
        "PresenceStore",
        "PresenceTracker",
        "PresenceUpdate",
        "RedisPresenceStore",
    ],
    "yalgaar_receiver.flask": [
        "BlueprintSettings",
        "RequestAuth",
        "RequestView",
        "WebhookClient",
        "blueprint_settings",
        "client_address",
        "create_blueprint",
    ],
    "yalgaar_receiver.flask.auth": [
        "SETTINGS",
        "TOKEN_PARAMETER",
        "RequestAuth",
        "RequestView",
        "client_address",
    ],
    "yalgaar_receiver.testing": [
        "Capture",
        "Payload",
        "Record",
        "bind",
        "capture_events",
        "message",
        "message_envelope",
        "presence_envelope",
        "unbind",
    ],
    "yalgaar_receiver.pytest_plugin": ["yalgaar_app", "yalgaar_client", "yalgaar_events"],
    "yalgaar_receiver.cli": ["main"],
}

#: The former paths of the modules that moved, and where their names live now.
FORMER = {
    "yalgaar_receiver.auth": "yalgaar_receiver.flask.auth",
    "yalgaar_receiver.blueprint": "yalgaar_receiver.flask.blueprint",
    "yalgaar_receiver.celery": "yalgaar_receiver.delivery.celery",
    "yalgaar_receiver.dedupe": "yalgaar_receiver.delivery.dedupe",
    "yalgaar_receiver.serialization": "yalgaar_receiver.delivery.serialization",
    "yalgaar_receiver.dispatch": "yalgaar_receiver.delivery.dispatch",
    "yalgaar_receiver.dead_letters": "yalgaar_receiver.delivery.dead_letters",
    "pytest_yalgaar": "yalgaar_receiver.flask.client",
}


@pytest.mark.parametrize("module", PUBLIC)
def test_public_names(module: str) -> None:
    imported = importlib.import_module(module)
    assert imported.__all__ == PUBLIC[module]
    for name in imported.__all__:
        assert getattr(imported, name) is not None


@pytest.mark.parametrize("former", FORMER)
def test_former_paths_give_the_same_objects(former: str) -> None:
    old, new = importlib.import_module(former), importlib.import_module(FORMER[former])
    assert old.__all__
    for name in old.__all__:
        assert getattr(old, name) is getattr(importlib.import_module(_home(former, name)), name)
    assert set(new.__all__) <= set(old.__all__)


def _home(former: str, name: str) -> str:
    # dispatch and dead_letters each gather two modules.
    extra = {
        "yalgaar_receiver.dispatch": (
            "yalgaar_receiver.delivery.threads",
            {"ThreadPoolDispatcher"},
        ),
        "yalgaar_receiver.dead_letters": (
            "yalgaar_receiver.delivery.replay",
            {"ReplayReport", "replay"},
        ),
    }
    module, names = extra.get(former, ("", set()))
    return module if name in names else FORMER[former]


def test_each_top_level_name_is_imported_from_where_it_is_defined() -> None:
    # The package's __init__ imports each name on first use: what it gives must be what the
    # imports that type checkers read (and __all__) say it is.
    guarded: dict[str, str] = {}
    for node in ast.walk(ast.parse(inspect.getsource(yalgaar_receiver))):
        if isinstance(node, ast.If) and ast.unparse(node.test) == "t.TYPE_CHECKING":
            for child in node.body:
                assert isinstance(child, ast.ImportFrom) and child.level == 1
                for alias in child.names:
                    # "from . import signals" names a module; "from .events import Event" a name
                    guarded[alias.asname or alias.name] = child.module or alias.name
    assert set(guarded) == set(yalgaar_receiver.__all__)
    for name, module in guarded.items():
        found = importlib.import_module(f"yalgaar_receiver.{module}")
        assert getattr(yalgaar_receiver, name) is (
            found if name == module else getattr(found, name)
        )
    assert set(yalgaar_receiver.__all__) <= set(dir(yalgaar_receiver))
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        yalgaar_receiver.Nope  # noqa: B018


def test_a_bare_import_still_reaches_the_submodules_as_attributes() -> None:
    # As it did when the package imported its core up front. A fresh interpreter: this one has
    # imported every module already.
    code = (
        "import yalgaar_receiver as y; "
        "print(y.events.BindEvent.__name__, y.schemas.PresenceItemSchema.__name__, "
        "y.delivery.dedupe.__name__, hasattr(y, 'nope'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.split() == [
        "BindEvent", "PresenceItemSchema", "yalgaar_receiver.delivery.dedupe", "False"
    ]  # fmt: skip


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
