"""Every Python code block in the docs runs, page by page, so docs cannot drift from code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).parents[2] / "docs"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def pages() -> list[str]:
    return sorted(p.name for p in DOCS.glob("*.md") if BLOCK.search(p.read_text()))


@pytest.mark.parametrize("page", pages())
def test_code_blocks_run(page: str) -> None:
    namespace: dict[str, object] = {"__name__": f"docs_{page[:-3]}"}
    for number, block in enumerate(BLOCK.findall((DOCS / page).read_text()), start=1):
        code = compile(block, f"{page} block {number}", "exec")
        exec(code, namespace)


def test_quickstart_prints_what_it_says(capsys: pytest.CaptureFixture[str]) -> None:
    namespace: dict[str, object] = {"__name__": "docs_quickstart"}
    for block in BLOCK.findall((DOCS / "quickstart.md").read_text()):
        exec(block, namespace)
    assert "u1 joined lobby at 2018-03-21 05:20:00+00:00" in capsys.readouterr().out


def test_the_pages_are_found() -> None:
    assert {"quickstart.md", "events.md", "testing.md", "signals.md"} <= set(pages())
