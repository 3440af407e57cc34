"""Run the fuzz target under atheris: ``python -m tests.fuzz [libFuzzer options] [corpus]``."""

from __future__ import annotations

import logging
import sys

import atheris

# Instrument only this package and the parser it relies on: instrumenting everything that is
# loaded (Flask, Werkzeug, Jinja) takes a minute and finds nothing of ours.
with atheris.instrument_imports(include=["yalgaar_receiver", "marshmallow"]):
    from tests.fuzz.fuzz_envelope import check

# check() inspects the receiver's records itself; keep them off the fuzzer's output.
logging.getLogger("yalgaar_receiver").propagate = False
atheris.Setup(sys.argv, check)
atheris.Fuzz()
