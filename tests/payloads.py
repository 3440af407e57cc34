"""Access to the payload files in ``tests/payloads/``: real bodies, one case per file."""

from __future__ import annotations

from pathlib import Path

DIRECTORY = Path(__file__).parent / "payloads"

#: The client key every payload file uses.
KEY = "ck-0123456789abcdef"


def payload(name: str) -> bytes:
    """The exact bytes of one payload file."""
    return (DIRECTORY / name).read_bytes()


def all_payloads() -> list[str]:
    """The names of every payload file, sorted."""
    return sorted(p.name for p in DIRECTORY.iterdir() if p.is_file())
