"""``yalgaar-receiver listen``: a throwaway receiver that prints every event as it arrives."""

from __future__ import annotations

from pathlib import Path

import click

from ._output import own_output, printing_refusals
from ._serve import app, printing_receiver, server, url_host


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="The address to bind.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=5000, show_default=True, help="0: any."
)
@click.option(
    "--client-key",
    "client_keys",
    multiple=True,
    help="A clientKey to accept (repeatable); without one, every key is accepted.",
)
@click.option(
    "--message-key",
    "message_keys",
    multiple=True,
    help="An AES key publishers encrypt messages with (repeatable): messages are shown "
    "decrypted (needs the crypto extra).",
)
@click.option(
    "--capture",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Append every JSON body received to this JSON-lines file.",
)
def listen(
    host: str,
    port: int,
    client_keys: tuple[str, ...],
    message_keys: tuple[str, ...],
    capture: Path | None,
) -> None:
    """Run a throwaway receiver that prints every event as it arrives.

    It answers on /presence, /message and / like an app with the blueprint. Point the Yalgaar
    dashboard's Presence and Message URLs at it (through a tunnel of your own) to see the real
    payloads; --capture keeps them, one body per line, for `replay` and `validate`. Stop it
    with Ctrl-C.

    \b
    Example:
      yalgaar-receiver listen --port 5000 --client-key ck-test --capture seen.jsonl
    """
    receiver = printing_receiver(client_keys, message_keys)
    running = server(app(receiver, capture), host, port)
    where = f"http://{url_host(host)}:{running.server_port}"
    keys = f"{len(client_keys)} client key(s)" if client_keys else "ANY clientKey (no key given)"
    click.echo(f"Listening on {where}/presence and {where}/message, accepting {keys}.")
    if capture is not None:
        click.echo(f"Capturing bodies to {capture}.")
    click.echo("Press Ctrl-C to stop.")
    try:
        with own_output(), printing_refusals(receiver):
            running.serve_forever()
    except KeyboardInterrupt:
        click.echo("Stopped.")
    finally:
        running.server_close()
