"""A griffe extension for the docs site: Sphinx roles in docstrings become code spans.

The package's docstrings follow the Pallets style (``:class:`~yalgaar_receiver.Receiver```), which
mkdocstrings would show as raw text. When mkdocstrings loads each object, this rewrites every
role into the code span a reader sees in Sphinx: ``:class:`~a.b.Receiver``` becomes
```Receiver```, ``:meth:`emit <a.Receiver.emit>``` becomes ```emit```, and
``:class:`a.b.Receiver``` keeps its full name. The source keeps its roles; only the site changes.
"""

from __future__ import annotations

import re
import typing as t

import griffe

ROLE = re.compile(r":(?:py:)?(?:class|meth|func|mod|data|attr|exc|obj|const):`([^`]+)`")


def _text(target: str) -> str:
    title, _, explicit = target.partition(" <")
    if explicit:
        return title.strip()
    if target.startswith("~"):
        return target[1:].rsplit(".", 1)[-1]
    return target


def rewrite(docstring: str) -> str:
    """The docstring with each Sphinx role turned into a Markdown code span."""
    return ROLE.sub(lambda match: f"`{_text(match.group(1))}`", docstring)


class SphinxRoles(griffe.Extension):
    """Rewrites the roles of every docstring griffe loads."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: t.Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = rewrite(obj.docstring.value)
