"""Internal: the files the commands read: one JSON body, or one body per line."""

from __future__ import annotations

import json
import sys
import typing as t
from pathlib import Path

import click

from ._http import reason


def read(file: str) -> bytes:
    if file == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(file).read_bytes()
    except OSError as error:
        raise click.ClickException(f"Cannot read {file}: {reason(error)}.") from None


def bodies(file: str) -> t.Iterator[tuple[str, bytes]]:
    """The bodies in a file: the whole file when it is one JSON document, else one per line."""
    data = read(file)
    name = "<stdin>" if file == "-" else file
    try:
        json.loads(data.decode("utf-8-sig"))
    except ValueError:
        pass
    else:
        yield name, data
        return
    lines = [(n, line) for n, line in enumerate(data.splitlines(), 1) if line.strip()]
    if len(lines) <= 1:
        # One body that is not JSON: let the parser say what is wrong with it.
        yield name, data
        return
    for number, line in lines:
        yield f"{name}:{number}", line


def json_bodies(file: str) -> list[bytes]:
    """The bodies of a file, as :func:`bodies` finds them, each checked to be JSON."""
    found = []
    for label, body in bodies(file):
        if not body.strip():
            continue
        try:
            json.loads(body.decode("utf-8-sig"))
        except UnicodeDecodeError:
            raise click.ClickException(f"{label}: not UTF-8 text.") from None
        except ValueError as error:
            raise click.ClickException(
                f"{label}: not JSON ({error}); expected one JSON body, or one per line."
            ) from None
        found.append(body)
    if not found:
        raise click.ClickException(f"{'<stdin>' if file == '-' else file} holds no JSON bodies.")
    return found
