"""The fuzz target in ``tests/fuzz``: run for a bounded number of inputs, and its findings.

With atheris installed (the ``dev`` extra installs it where it has wheels) the target runs under
libFuzzer in a subprocess; elsewhere hypothesis feeds it random bytes. Either way the run is
bounded. Every file in ``tests/payloads`` (the hostile cases and any ``fuzz-*`` finding) is also
run through the target on its own.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import typing as t
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from .fuzz_envelope import check

ROOT = Path(__file__).parents[2]
PAYLOADS = Path(__file__).parents[1] / "payloads"
#: Inputs per run: about ten seconds under atheris on a busy 2-core machine.
RUNS = 20_000


@pytest.mark.parametrize("path", sorted(PAYLOADS.iterdir()), ids=lambda p: p.name)
def test_payload_files_pass_the_fuzz_target(path: Path) -> None:
    check(path.read_bytes())


def test_fuzz_parse_envelope(tmp_path: Path) -> None:
    if importlib.util.find_spec("atheris") is None:
        _fuzz_with_hypothesis()
        return
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for path in PAYLOADS.iterdir():
        shutil.copy(path, corpus)
    result = subprocess.run(
        [
            sys.executable, "-m", "tests.fuzz",
            f"-runs={RUNS}", "-max_len=4096", "-max_total_time=90", "-timeout=10",
            "-rss_limit_mb=2048", f"-artifact_prefix={tmp_path}/", str(corpus),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )  # fmt: skip
    findings = sorted(p.name for p in tmp_path.iterdir() if p.name != "corpus")
    assert result.returncode == 0 and not findings, (
        f"atheris found {findings}: save each as tests/payloads/fuzz-<what>.bin\n"
        + result.stderr[-3000:]
    )
    assert f"Done {RUNS} runs" in result.stderr


def _fuzz_with_hypothesis() -> None:
    @settings(max_examples=2000, deadline=None, database=None)
    @given(st.binary(max_size=4096))
    def run(data: bytes) -> None:
        check(data)

    run()


# Structured envelopes reach deeper than random bytes: the right keys with hostile values.
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(alphabet=st.characters(codec=None), max_size=30)
)
_VALUES = st.recursive(
    _SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner)
)
_ITEMS = st.fixed_dictionaries(
    {},
    optional={
        "channel": _VALUES,
        "uuid": _VALUES,
        "timestamp": _VALUES,
        "action": _VALUES,
        "message": _VALUES,
    },
)
_ENVELOPES = st.fixed_dictionaries(
    {},
    optional={
        "source": st.sampled_from(["Presence", "Message", "presence ", "other"]) | _VALUES,
        "clientKey": st.just("ck-0123456789abcdef") | _VALUES,
        "data": st.lists(_ITEMS, max_size=4) | _VALUES,
    },
)


@settings(max_examples=300, deadline=None, database=None)
@given(st.one_of(_ENVELOPES.map(lambda e: {"items": e}), st.lists(_ENVELOPES, max_size=3)))
def test_structured_envelopes_pass_the_fuzz_target(document: t.Any) -> None:
    check(json.dumps(document).encode("utf-8", "surrogatepass"))


def test_the_target_reports_what_it_must(monkeypatch: pytest.MonkeyPatch) -> None:
    # Guards the target itself: an undocumented exception, or a log line broken by the input,
    # must make check() raise, or the fuzzer would find nothing.
    from yalgaar_receiver import receiver as receiver_module

    from . import fuzz_envelope

    def broken(body: object, **kwargs: object) -> object:
        raise KeyError("a bug")

    with monkeypatch.context() as patch:
        patch.setattr(fuzz_envelope, "parse_envelope", broken)
        with pytest.raises(KeyError):
            check(b"{}")

    def forged(*args: object, **kwargs: object) -> None:
        receiver_module.logger.warning("Refused: %s", "line\nforged")

    with monkeypatch.context() as patch:
        patch.setattr(fuzz_envelope._RECEIVER, "handle", forged)
        with pytest.raises(AssertionError, match="line break"):
            check(b"{}")
