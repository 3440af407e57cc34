"""``yalgaar-receiver replay``: post the bodies of a JSON-lines file again."""

from __future__ import annotations

import time

import click

from ._files import json_bodies
from ._http import post, timeout_option, url_option


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@click.option("--url", required=True, callback=url_option, help="Where to post each body.")
@click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True),
    default=10.0,
    show_default=True,
    help="Requests per second, at most.",
)
@timeout_option
def replay(file: str, url: str, rate: float, timeout: float) -> None:
    """Re-post the bodies of a file, then print how many answers had each status.

    The file holds one JSON body, or one body per line (JSON lines, as `listen --capture`
    writes them): the forms `validate` reads. The whole file is checked before anything is
    sent. The exit status is 1 when any answer was not 2xx.

    \b
    Example:
      yalgaar-receiver replay seen.jsonl --url http://127.0.0.1:5000/ --rate 5
    """
    bodies = json_bodies(file)
    statuses: dict[int, int] = {}
    with click.progressbar(bodies, label="Replaying", show_pos=True) as bar:
        for number, body in enumerate(bar):
            if number:
                time.sleep(1 / rate)
            status, _ = post(url, body, timeout=timeout)
            statuses[status] = statuses.get(status, 0) + 1
    counts = ", ".join(f"{status}: {n}" for status, n in sorted(statuses.items()))
    click.echo(f"Replayed {len(bodies)} bodies to {url}; statuses {counts or 'none'}.")
    if any(not 200 <= status < 300 for status in statuses):
        raise SystemExit(1)
