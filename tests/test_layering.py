"""The package's layering rules, written in its docstring, checked on the source."""

from __future__ import annotations

import ast
from pathlib import Path

import yalgaar_receiver

PACKAGE = Path(yalgaar_receiver.__file__).parent

#: Modules allowed to import each third-party package (by top-level name).
ALLOWED = {
    # The command line is an application built on the package; it serves a receiver.
    "flask": {"blueprint", "cli"},
    "werkzeug": {"blueprint", "cli"},
    "click": {"cli"},
    "marshmallow": {"schemas"},
    # Optional rooms: an extra is imported by its own module only.
    "celery": {"celery"},
    "kombu": {"celery"},
    "billiard": {"celery"},
    # RedisDedupeStore takes a client the application built: no module imports redis.
    "redis": set(),
}

#: The core pipeline in data-flow order: a module may import only modules before it.
PIPELINE = [
    "events",
    "exceptions",
    "signals",
    "wire",
    "fastpath",
    "schemas",
    "parsing",
    "routing",
    "dispatch",
    "dedupe",
    "receiver",
    "presence",
    "auth",
    "blueprint",
]


def imports_of(path: Path) -> set[str]:
    """Top-level names of everything a module imports (relative ones as package modules)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                if node.module:
                    found.add("." + node.module.split(".")[0])
                else:
                    found.update("." + alias.name for alias in node.names)
            elif node.module:
                found.add(node.module.split(".")[0])
    return found


def modules() -> dict[str, set[str]]:
    return {p.stem: imports_of(p) for p in PACKAGE.glob("*.py")}


def test_framework_and_schema_imports_stay_in_their_module() -> None:
    for module, imported in modules().items():
        for package, allowed in ALLOWED.items():
            if package in imported:
                assert module in allowed, f"{module}.py imports {package}"


def test_data_flows_one_way() -> None:
    found = modules()
    for position, module in enumerate(PIPELINE):
        later = {"." + m for m in PIPELINE[position + 1 :]}
        assert not (found[module] & later), f"{module}.py imports a later module"


def test_the_checker_sees_imports() -> None:
    # Guards the test itself: the blueprint does import flask and receiver.
    assert {"flask", ".receiver"} <= modules()["blueprint"]
    assert "marshmallow" in modules()["schemas"]
