"""The package's layering, checked on the whole import graph.

Every module of the package is placed once in :data:`FLOW`, in the order the data flows: bytes ->
envelopes -> events -> handlers -> outcome -> HTTP answer. A module may import only modules that
come before it, so there is no cycle, not even through an import under ``TYPE_CHECKING`` or
inside a function. Third-party packages are allowed where :data:`THIRD_PARTY` says. The core is
also imported, and used, in a fresh interpreter where importing Flask or Werkzeug fails.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import yalgaar_receiver

PACKAGE = Path(yalgaar_receiver.__file__).parent
NAME = "yalgaar_receiver"

#: Every module, in flow order; a module may import only the modules above it.
FLOW = [
    # The core, leaves first.
    "_version",
    "_links",
    "_fork",
    "_extras",
    "_redis",
    "events",
    "exceptions",
    "settings",
    "signals",
    "wire",
    "encryption",
    "_json_schema",
    "_loader",
    "schemas",
    "parsing",
    "routing",
    "payloads",
    # Delivery: how events reach the handlers; the receiver takes it through interfaces.
    "delivery.dispatch",
    "delivery.serialization",
    "delivery.dedupe",
    "delivery.dead_letters",
    "delivery.replay",
    "delivery.threads",
    "delivery",
    "delivery.celery",
    # The receiver assembles the outcome.
    "receiver",
    # Presence state, from the receiver's signals.
    "presence.model",
    "presence.memory",
    "presence.redis",
    "presence.tracker",
    "presence",
    # The test kit.
    "testing",
    # Instruments built on the signals of the receiver, its dispatchers and trackers.
    "metrics",
    "tracing",
    # The HTTP answer, and the test client that posts to it.
    "flask.auth",
    "flask.blueprint",
    "flask.client",
    "flask",
    "pytest_plugin",
    # The command line, an application built on all of it.
    "cli._http",
    "cli._output",
    "cli._files",
    "cli._serve",
    "cli.send",
    "cli.listen",
    "cli.replay",
    "cli.validate",
    "cli.demo",
    "cli",
    # The public API, then the former paths of modules that moved.
    "",
    "auth",
    "blueprint",
    "celery",
    "dead_letters",
    "dedupe",
    "dispatch",
    "serialization",
]

#: The modules allowed to import each third-party package, by its top-level name; a module
#: ``room.*`` stands for every module of a room. Packages not listed (blinker, the standard
#: library) may be imported anywhere.
THIRD_PARTY = {
    # The pytest plugin names Flask's app type; it imports Flask only when a fixture is used.
    "flask": {"flask.*", "cli.*", "pytest_plugin"},
    "werkzeug": {"flask.*", "cli.*"},
    "click": {"cli.*"},
    "marshmallow": {"schemas", "_loader", "payloads"},
    "cryptography": {"encryption"},
    "prometheus_client": {"metrics"},
    "opentelemetry": {"tracing"},
    "celery": {"delivery.celery"},
    "kombu": {"delivery.celery"},
    "billiard": {"delivery.celery"},
    "pytest": {"pytest_plugin"},
    # The Redis-backed classes take a client the application built.
    "redis": set(),
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str) -> tuple[set[str], set[str]]:
    """What module ``name`` imports anywhere in its text: package modules (names relative to
    the package, ``""`` for the package itself) and third-party top-level names."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    inside: set[str] = set()
    outside: set[str] = set()

    def add(target: str) -> None:
        if target == NAME or target.startswith(NAME + "."):
            inside.add(target[len(NAME) + 1 :])
        else:
            outside.add(target.split(".")[0])

    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".") if package else []
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                prefix = ".".join([NAME, *base, *([node.module] if node.module else [])])
            else:
                prefix = node.module or ""
            for alias in node.names:
                # ``from . import wire`` imports a module; ``from .events import Event`` a name.
                candidate = f"{prefix}.{alias.name}"
                inner = candidate[len(NAME) + 1 :] if candidate.startswith(NAME + ".") else None
                add(candidate if inner in MODULES else prefix)
    outside.discard("__future__")
    return inside, outside


def allowed(module: str, patterns: set[str]) -> bool:
    room = module.split(".")[0]
    return module in patterns or f"{room}.*" in patterns


def test_every_module_has_a_place_in_the_flow() -> None:
    assert sorted(MODULES) == sorted(FLOW)


def test_no_module_imports_one_later_in_the_flow() -> None:
    rank = {name: position for position, name in enumerate(FLOW)}
    for module in FLOW:
        inside, _ = imports_of(module)
        later = {target for target in inside if rank[target] >= rank[module]}
        assert not later, f"{module or NAME} imports {sorted(later)}, which come after it"


def test_third_party_imports_stay_in_their_rooms() -> None:
    for module in FLOW:
        _, outside = imports_of(module)
        for package, patterns in THIRD_PARTY.items():
            if package in outside:
                assert allowed(module, patterns), f"{module} imports {package}"


def test_the_checker_sees_every_kind_of_import() -> None:
    # Guards the test itself: a relative module import, a name import, a function-level import
    # and one under TYPE_CHECKING.
    assert {"wire", "_json_schema", "events"} <= imports_of("schemas")[0]
    assert "flask" in imports_of("flask.blueprint")[1]
    assert "marshmallow" in imports_of("schemas")[1]
    assert "flask.blueprint" in imports_of("")[0]  # inside __getattr__ and TYPE_CHECKING
    assert "flask.client" in imports_of("pytest_plugin")[0]  # inside a fixture


BLOCKER = """
import sys

class Blocked:
    # Refuses Flask and Werkzeug, as an interpreter without them would.
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("flask", "werkzeug"):
            raise ImportError(f"{name} is blocked for this test")
        return None

sys.meta_path.insert(0, Blocked())
"""


def run_without_flask(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCKER + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_core_imports_and_works_where_flask_cannot_be_imported() -> None:
    result = run_without_flask(
        """
        import sys
        import yalgaar_receiver
        from yalgaar_receiver import Receiver, ThreadPoolDispatcher, parse_envelope, signals
        from yalgaar_receiver.delivery import MemoryDedupeStore, replay
        from yalgaar_receiver.presence import PresenceTracker
        from yalgaar_receiver.schemas import envelope_json_schema
        from yalgaar_receiver.testing import bind, capture_events, presence_envelope

        body = presence_envelope(bind("lobby", "alice", at=1521609600), client_key="ck-1")
        assert len(parse_envelope(body.to_bytes()).events) == 1
        receiver = Receiver(client_keys=["ck-1"], dedupe=MemoryDedupeStore())
        seen = []
        receiver.on_bind(lambda event: seen.append(event.uuid))
        tracker = PresenceTracker(receiver, sweep_interval=None)
        with capture_events(receiver) as capture:
            outcome = receiver.handle(body.to_bytes(), source_hint="presence")
        assert seen == ["alice"] and len(outcome.accepted) == 1 and len(capture) == 1
        assert tracker.members("lobby") == {"alice"}
        assert "flask" not in sys.modules and "werkzeug" not in sys.modules
        try:
            yalgaar_receiver.create_blueprint
        except ImportError as error:
            print("create_blueprint:", error)
        """
    )
    assert result.returncode == 0, result.stderr
    assert "create_blueprint: flask is blocked" in result.stdout


@pytest.mark.parametrize("module", ["yalgaar_receiver.flask", "yalgaar_receiver.cli"])
def test_the_rooms_that_need_flask_say_so(module: str) -> None:
    result = run_without_flask(f"import {module}")
    assert result.returncode != 0
    assert "flask is blocked" in result.stderr
