"""``yalgaar-receiver validate``: parse bodies without a server."""

from __future__ import annotations

import click

from .. import wire
from ..events import Batch
from ..exceptions import InvalidEnvelopeError
from ..parsing import parse_envelope
from ._files import bodies
from ._output import describe, describe_rejection


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, allow_dash=True))
@click.option(
    "--source",
    type=click.Choice(sorted(set(wire.SOURCES.values()))),
    help="The endpoint the bodies came to, for envelopes without a source.",
)
def validate(files: tuple[str, ...], source: str | None) -> None:
    """Parse bodies without a server: print the typed events, or what is wrong.

    A FILE holds one JSON body, or one body per line (JSON lines); '-' reads stdin. The exit
    status is 1 when a body is refused or an item is rejected, so it fits the CI of an app
    that keeps sample payloads.

    \b
    Example:
      yalgaar-receiver validate tests/payloads/*.json
    """
    bad = 0
    for file in files:
        for label, body in bodies(file):
            try:
                batch = parse_envelope(body, source_hint=source)
            except InvalidEnvelopeError as error:
                click.echo(f"{label}: refused: {error}")
                bad += 1
                continue
            bad += bool(batch.rejected)
            _print_batch(label, batch)
    if bad:
        raise SystemExit(1)


def _print_batch(label: str, batch: Batch) -> None:
    verdict = "ok" if not batch.rejected else f"{len(batch.rejected)} rejected"
    click.echo(f"{label}: {len(batch.events)} event(s), {verdict}")
    for event in batch.events:
        click.echo(f"  {describe(event)}")
    for rejection in batch.rejected:
        click.echo(f"  {describe_rejection(rejection)}")
