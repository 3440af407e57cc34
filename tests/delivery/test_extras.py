"""An optional dependency that is missing says which extra to install."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

BLOCK = """
import sys

class Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, Blocked())
import {module}
"""


@pytest.mark.parametrize(
    ("module", "blocked", "extra"),
    [
        ("yalgaar_receiver.celery", ("celery",), "celery"),
        ("yalgaar_receiver.delivery.celery", ("kombu",), "celery"),
    ],
)
def test_a_missing_extra_names_itself(module: str, blocked: tuple[str, ...], extra: str) -> None:
    code = textwrap.dedent(BLOCK).format(blocked=set(blocked), module=module)
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("ModuleNotFoundError")
    assert f"pip install 'yalgaar-receiver[{extra}]'" in last
