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


@pytest.mark.parametrize(
    "value",
    [
        # Valid ISO dates whose UTC time is outside datetime's range.
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-01:00",
        "0001-01-01T00:59:59.999999+01:00",
        # Numbers past year 9999 (only nanoseconds reach it, units going by magnitude), and
        # beyond what a float holds.
        10**21,
        "3e20",
        "260000000000000000000",
        "1" + "0" * 400,
        10**400,
        1e300,
    ],
)
def test_a_time_out_of_range_is_a_value_error_never_an_overflow(value: object) -> None:
    with pytest.raises(ValueError, match="out of range"):
        wire.read_timestamp(value)


@given(
    st.datetimes(timezones=st.timezones()).map(lambda moment: moment.isoformat()),
)
def test_every_iso_text_ends_in_a_value_or_a_value_error(text: str) -> None:
    try:
        moment = wire.read_timestamp(text)
    except ValueError:
        return
    assert moment is not None and moment.tzinfo is timezone.utc


def test_the_edges_that_fit_are_read() -> None:
    assert wire.read_timestamp("0001-01-01T01:00:00+01:00") == datetime(
        1, 1, 1, tzinfo=timezone.utc
    )
    top = wire.read_timestamp("9999-12-31T23:59:59.999999+00:00")
    assert top == datetime.max.replace(tzinfo=timezone.utc)
