"""Fuzz target for :func:`~yalgaar_receiver.parse_envelope` and :meth:`Receiver.handle`.

Run it with atheris (libFuzzer) for as long as you like (``make fuzz`` does)::

    python -m tests.fuzz -max_total_time=600 corpus/

``tests/fuzz/test_fuzz.py`` runs it for a bounded number of inputs on every ``make test``. The only
outcomes allowed are a :class:`~yalgaar_receiver.Batch` or one of the documented refusals; any
other exception is a finding: save the input as ``tests/payloads/fuzz-<what>.bin`` and it becomes
a regression test in ``tests/fuzz/test_fuzz.py``.
"""

from __future__ import annotations

import logging

from yalgaar_receiver import Receiver, parse_envelope
from yalgaar_receiver.receiver import REFUSALS

_RECEIVER = Receiver(["ck-0123456789abcdef"])


@_RECEIVER.on_event
def _fail(event: object) -> None:
    # A failing handler makes the receiver log the event: the log check below needs that line.
    raise RuntimeError("handler failed on purpose")


class _Records(logging.Handler):
    """Keeps the receiver's log records of one input, so that check() can inspect them."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


_logger = logging.getLogger("yalgaar_receiver")


def check(data: bytes) -> None:
    """Feed one input through parsing and the receiver; raise on anything undocumented."""
    # The handler is attached for this call only: importing this module changes no logging.
    records = _Records()
    level = _logger.level
    _logger.addHandler(records)
    _logger.setLevel(logging.DEBUG)
    try:
        for body in _bodies(data):
            _feed(body)
    finally:
        _logger.removeHandler(records)
        _logger.setLevel(level)
    for record in records.records:
        message = record.getMessage()
        # Input must never start a new log line.
        if "\n" in message or "\r" in message:
            raise AssertionError(f"a log message holds a line break: {message[:200]!r}")


def _feed(body: bytes | str) -> None:
    try:
        batch = parse_envelope(body)
    except REFUSALS:
        pass
    else:
        # Events and rejections must be printable: they end up in logs.
        for event in batch.events:
            repr(event)
        for rejection in batch.rejected:
            repr(rejection)
    try:
        _RECEIVER.handle(body)
    except REFUSALS:
        pass


def _bodies(data: bytes) -> list[bytes | str]:
    bodies: list[bytes | str] = [data]
    try:
        bodies.append(data.decode("utf-8"))
    except UnicodeDecodeError:
        pass
    return bodies
