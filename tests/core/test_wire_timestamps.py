"""The shortcuts in ``wire.read_timestamp`` read what the general rule reads.

Whole seconds as ASCII digits skip the regular expression, and each unit has its own
``timedelta`` call; the general rule (``TIMESTAMP_UNITS``: scale by magnitude, from the epoch) is
the oracle here.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from yalgaar_receiver import wire

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def by_the_rule(number: float) -> datetime:
    for bound, unit in wire.TIMESTAMP_UNITS:
        if number < bound:
            return EPOCH + timedelta(**{unit: number})
    return EPOCH + timedelta(microseconds=number / 1000)


@given(st.integers(min_value=1, max_value=10**18 - 1), st.sampled_from(["", " ", "00", "\t"]))
def test_digit_text_reads_as_its_number(number: int, pad: str) -> None:
    text = f"{pad}{number}{pad.strip('0')}"
    assert wire.read_timestamp(text) == wire.read_timestamp(number) == by_the_rule(number)


@given(st.floats(min_value=1e-3, max_value=1e17, allow_nan=False))
def test_numbers_scale_by_magnitude(number: float) -> None:
    assert wire.read_timestamp(number) == by_the_rule(number)
    assert wire.read_timestamp(repr(number)) == by_the_rule(float(repr(number)))


@pytest.mark.parametrize("text", ["١٢٣", "²", "12a"])
def test_digits_that_are_not_ascii_are_not_numbers(text: str) -> None:
    with pytest.raises(ValueError, match="neither a number of seconds nor an ISO-8601 date"):
        wire.read_timestamp(text)


def test_the_other_types_keep_their_rules() -> None:
    assert wire.read_timestamp(None) is None
    assert wire.read_timestamp(" ") is None
    assert wire.read_timestamp("0") is None
    with pytest.raises(ValueError, match="boolean true"):
        wire.read_timestamp(True)
    with pytest.raises(ValueError, match="got an array"):
        wire.read_timestamp([1])
