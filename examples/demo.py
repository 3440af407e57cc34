"""What ``make demo`` shows, runnable as a script: ``python examples/demo.py``.

The demo itself is the ``yalgaar-receiver demo`` command (:mod:`yalgaar_receiver.cli`): a receiver
on a free 127.0.0.1 port, simulated Yalgaar traffic through it, and every handler's output. This
file only calls it, so that the example and the command cannot drift apart.
"""

from __future__ import annotations

import sys

from yalgaar_receiver.cli import main

if __name__ == "__main__":
    main(["demo", *sys.argv[1:]])
