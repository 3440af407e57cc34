"""``yalgaar-receiver``: send, receive, replay and check Yalgaar webhooks from a terminal.

The command line is an application built on the package, like the examples: one module per
command (:mod:`~yalgaar_receiver.cli.send`, ``listen``, ``replay``, ``validate``, ``demo``), and
this group that gathers them. HTTP goes out through the standard library's ``urllib.request``,
with a timeout on every request.

Every error a user can cause (a URL that refuses connections, a file that is not JSON lines) is
one line on stderr and a non-zero exit status, never a traceback.

Imports: click, and everything else in the package; it is the last room of the tree.
"""

from __future__ import annotations

import click

from .._version import __version__
from .demo import demo
from .listen import listen
from .replay import replay
from .send import send
from .validate import validate

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="yalgaar-receiver")
def main() -> None:
    """Send, receive, replay and check Yalgaar webhooks.

    \b
    Try it:
      yalgaar-receiver demo
      yalgaar-receiver listen --port 5000
      yalgaar-receiver send presence --url http://127.0.0.1:5000/presence \\
          --client-key ck-test --channel lobby --uuid alice
    """


for _command in (send, listen, replay, validate, demo):
    main.add_command(_command)
