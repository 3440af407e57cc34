"""Internal: where the documentation lives, for the messages that point a person at it.

A message names a page of the documentation site, not a path in the repository: an installed
package ships no ``docs/`` folder. The site is built from ``docs/`` by ``make docs``; the same
address is ``site_url`` in ``mkdocs.yml`` and ``Documentation`` in ``pyproject.toml``.

Imports: nothing.
"""

from __future__ import annotations

__all__ = ["DOCS", "page"]

#: The documentation site.
DOCS = "https://yalgaar-receiver.readthedocs.io/en/latest/"


def page(name: str, anchor: str = "") -> str:
    """The address of a page of the site: ``page("security")``, ``page("http", "checks")``."""
    return f"{DOCS}{name}/" + (f"#{anchor}" if anchor else "")
