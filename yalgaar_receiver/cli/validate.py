"""``yalgaar-receiver validate``: parse bodies without a server."""

from __future__ import annotations

import click

from .. import wire
from ..exceptions import InvalidEnvelopeError, PayloadTooLargeError
from ..flask.blueprint import DEFAULT_MAX_BODY_BYTES, check_size
from ..receiver import Receiver
from ._files import bodies
from ._output import describe, describe_rejection, quiet_package_log

_DEFAULTS = Receiver(allow_unauthenticated=True)


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, allow_dash=True))
@click.option(
    "--source",
    type=click.Choice(sorted(set(wire.SOURCES.values()))),
    help="The endpoint the bodies came to, for envelopes without a source.",
)
@click.option(
    "--max-body-bytes",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_BODY_BYTES,
    show_default=True,
    help="The receiver's max_body_bytes: a larger body is refused (413).",
)
@click.option(
    "--max-items",
    type=click.IntRange(min=1),
    default=_DEFAULTS.max_items,
    show_default=True,
    help="The receiver's max_items: a body with more items is refused (413).",
)
@click.option(
    "--max-depth",
    type=click.IntRange(min=1),
    default=_DEFAULTS.max_depth,
    show_default=True,
    help="The receiver's max_depth: deeper JSON is refused (400).",
)
def validate(
    files: tuple[str, ...],
    source: str | None,
    max_body_bytes: int,
    max_items: int,
    max_depth: int,
) -> None:
    """Parse bodies without a server: print the typed events, or what is wrong.

    A FILE holds one JSON body, or one body per line (JSON lines); '-' reads stdin. Each body
    is checked as a receiver with the same limits reads it (its client key aside). The exit
    status is 1 when a body is refused or an item is rejected, so it fits the CI of an app
    that keeps sample payloads.

    \b
    Example:
      yalgaar-receiver validate tests/payloads/*.json
    """
    receiver = Receiver(allow_unauthenticated=True, max_items=max_items, max_depth=max_depth)
    bad = 0
    # Each refusal and warning is printed below; the package's own log lines would repeat them.
    with quiet_package_log():
        bad = _validate(receiver, files, source, max_body_bytes)
    if bad:
        raise SystemExit(1)


def _validate(
    receiver: Receiver, files: tuple[str, ...], source: str | None, max_body_bytes: int
) -> int:
    bad = 0
    for file in files:
        for label, body in bodies(file):
            try:
                check_size(len(body), max_body_bytes)
                outcome = receiver.handle(body, source_hint=source)
            except (InvalidEnvelopeError, PayloadTooLargeError) as error:
                click.echo(f"{label}: refused: {error}")
                bad += 1
                continue
            bad += bool(outcome.rejected)
            verdict = "ok" if not outcome.rejected else f"{len(outcome.rejected)} rejected"
            click.echo(f"{label}: {len(outcome.accepted)} event(s), {verdict}")
            for event in outcome.accepted:
                click.echo(f"  {describe(event)}")
            for rejection in outcome.rejected:
                click.echo(f"  {describe_rejection(rejection)}")
            for warning in outcome.warnings:
                click.echo(f"  warning: {warning}")
    return bad
