"""The load suite prints every test's figures once more at the end of the run."""

from __future__ import annotations

import pytest

from .harness import REPORTS


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if REPORTS:
        terminalreporter.section("load and fault figures")
        for text in REPORTS:
            terminalreporter.write_line(text)
