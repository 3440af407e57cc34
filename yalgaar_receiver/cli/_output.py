"""Internal: how the commands print events, rejections and refusals, and keep other
loggers quiet while they do.
"""

from __future__ import annotations

import contextlib
import json
import logging
import typing as t
from datetime import datetime

import click

from .. import signals
from ..events import Event, MessageEvent, PresenceEvent, Rejection, UnknownEvent
from ..exceptions import YalgaarError
from ..receiver import Receiver


def describe(event: Event) -> str:
    """One aligned line for an event, as ``listen``, ``validate`` and ``demo`` print it."""
    when = event.timestamp.isoformat().replace("+00:00", "Z") if event.timestamp else "-"
    if isinstance(event, MessageEvent):
        kind, detail = "message", f"message={clip(event.message)}"
        if event.encrypted:
            detail += " (decrypted)"
    elif isinstance(event, PresenceEvent):
        kind, detail = event.event_type, f"action={event.raw_action!r}"
    elif isinstance(event, UnknownEvent):
        kind, detail = "unknown", f"source={event.source!r}"
    else:
        kind, detail = event.event_type, ""
    extra = f" extra={json.dumps(dict(event.extra))}" if event.extra else ""
    return (
        f"{kind:<8} channel={event.channel!r} uuid={event.uuid!r} at={when} {detail}{extra}"
    ).rstrip()


def describe_rejection(rejection: Rejection) -> str:
    """One line for a malformed item."""
    problems = "; ".join(
        f"{field}: {' '.join(map(str, messages)) if isinstance(messages, list) else messages}"
        for field, messages in rejection.errors.items()
    )
    return f"rejected envelope {rejection.envelope} item {rejection.index}: {problems}"


def clip(text: str, limit: int = 80) -> str:
    shown = repr(text)
    return shown if len(shown) <= limit else shown[: limit - 4] + "...'"


def stamp() -> str:
    return datetime.now().strftime("%H:%M:%S")


@contextlib.contextmanager
def printing_refusals(receiver: Receiver) -> t.Iterator[None]:
    """Print rejected items, refused requests and source mismatches while the block runs."""

    def rejected(sender: Receiver, rejection: Rejection, **extra: t.Any) -> None:
        click.echo(f"{stamp()} {describe_rejection(rejection)}")

    def refused(sender: Receiver, error: YalgaarError, **extra: t.Any) -> None:
        click.echo(f"{stamp()} refused ({type(error).__name__}): {error}")

    def mismatched(sender: Receiver, source_hint: str, source: str, **extra: t.Any) -> None:
        click.echo(
            f"{stamp()} warning: a {source} envelope came to the /{source_hint} URL; check the "
            "webhook URLs in the Yalgaar dashboard"
        )

    with (
        signals.event_rejected.connected_to(rejected, sender=receiver),
        signals.envelope_rejected.connected_to(refused, sender=receiver),
        signals.source_mismatch.connected_to(mismatched, sender=receiver),
    ):
        yield


@contextlib.contextmanager
def quiet_package_log() -> t.Iterator[None]:
    """Silence the package's log lines for the block, and put the logger back afterwards."""
    package = logging.getLogger("yalgaar_receiver")
    propagate = package.propagate
    silent = logging.NullHandler()
    package.addHandler(silent)
    package.propagate = False
    try:
        yield
    finally:
        package.removeHandler(silent)
        package.propagate = propagate


@contextlib.contextmanager
def own_output() -> t.Iterator[None]:
    """Let the command's own lines speak: silence Werkzeug's access log and the package's log
    lines (each refusal is already printed), and put both back afterwards, so that a test
    running the command in-process keeps its logging as it was."""
    werkzeug = logging.getLogger("werkzeug")
    level = werkzeug.level
    werkzeug.setLevel(logging.ERROR)
    try:
        with quiet_package_log():
            yield
    finally:
        werkzeug.setLevel(level)
