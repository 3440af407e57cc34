"""The docs site's own rules: every quickstart block runs, and the nav and the pages agree.

``make docs`` builds the site with ``--strict`` (and ``make test`` runs it); these checks say
*which* rule broke in one line, before the build does.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parents[2]
DOCS = ROOT / "docs"
FENCE = re.compile(r"^```(\S*)", re.MULTILINE)
NAV_TARGET = re.compile(r":\s*([\w./-]+\.md)\s*$", re.MULTILINE)


def test_every_quickstart_block_is_python_and_so_is_run() -> None:
    # tests/test_docs.py runs each ```python block; a block in any other language would not be.
    fences = FENCE.findall((DOCS / "quickstart.md").read_text())
    openings = fences[::2]
    assert openings and set(openings) == {"python"}, openings
    assert set(fences[1::2]) == {""}


def test_nav_and_pages_agree() -> None:
    nav = NAV_TARGET.findall((ROOT / "mkdocs.yml").read_text())
    pages = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}
    assert len(nav) == len(set(nav)), "a page is twice in the nav"
    assert set(nav) == pages, (
        f"not in the nav: {sorted(pages - set(nav))}; missing files: {sorted(set(nav) - pages)}"
    )


def test_make_docs_is_strict_and_not_quiet() -> None:
    # mkdocs --quiet hides warnings from --strict as well, so a broken site would build "fine".
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("\ndocs:", 1)[1].split("\n\n", 1)[0]
    assert "mkdocs build --strict" in recipe
    assert "--quiet" not in recipe and " -q" not in recipe
    assert "docs" in makefile.split("\ntest:", 1)[1].split("\n", 1)[0].split()
