"""Internal: what a module that needs an optional extra says when the extra is not installed.

Imports: nothing.
"""

from __future__ import annotations

__all__ = ["install", "missing"]


def install(extra: str) -> str:
    """The command that installs ``extra``."""
    return f"pip install 'yalgaar-receiver[{extra}]'"


def missing(error: ModuleNotFoundError, module: str, extra: str) -> ModuleNotFoundError:
    """The error ``module`` raises in place of ``error``: what is missing, and the extra."""
    return ModuleNotFoundError(
        f"{module} needs {error.name!r}, which is not installed; install the extra: "
        f"{install(extra)}",
        name=error.name,
    )
