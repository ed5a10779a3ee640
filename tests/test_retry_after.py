"""parse_retry_after: every form RFC 9110 allows, and never an exception for anything else."""

from __future__ import annotations

import email.utils
import math
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector import parse_retry_after

# Wed, 21 Oct 2015 07:28:00 GMT, RFC 9110's example, as a Unix time.
EXAMPLE = datetime(2015, 10, 21, 7, 28, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        ("0", 0.0),
        ("  7\t", 7.0),
        ("1.5", 1.5),  # not RFC 9110's 1*DIGIT, but providers send it
        ("007", 7.0),
        (b"30", 30.0),
        ("86400000", 86_400_000.0),
    ],
)
def test_delay_seconds(value: str | bytes, seconds: float) -> None:
    assert parse_retry_after(value, EXAMPLE) == seconds


@pytest.mark.parametrize(
    "value",
    [
        "Wed, 21 Oct 2015 07:30:00 GMT",  # IMF-fixdate, the preferred form
        "Wednesday, 21-Oct-15 07:30:00 GMT",  # obsolete RFC 850
        "Wed Oct 21 07:30:00 2015",  # obsolete asctime: no zone, GMT by definition
        b"Wed, 21 Oct 2015 07:30:00 GMT",
    ],
)
def test_http_dates(value: str | bytes) -> None:
    assert parse_retry_after(value, EXAMPLE) == 120.0


def test_a_date_in_the_past_means_now() -> None:
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", EXAMPLE + 3600) == 0.0
    assert parse_retry_after("Thu, 01 Jan 1970 00:00:00 GMT", EXAMPLE) == 0.0


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "   ",
        "soon",
        "-5",
        "+5",
        "- 5",
        "nan",
        "NaN",
        "inf",
        "Infinity",
        "1e3",
        "1_000",
        "0x10",
        "5 seconds",
        "1.",
        ".5",
        "\u0663",  # ARABIC-INDIC DIGIT THREE: a digit to str.isdigit, not to HTTP
        "1" + "0" * 400,  # too large for a float
        "Wed, 32 Oct 2015 07:28:00 GMT",
        "Fri, 31 Dec 99999 23:59:59 GMT",
        b"\xff\xfe",
    ],
)
def test_unreadable_values_give_none(value: str | bytes | None) -> None:
    assert parse_retry_after(value, EXAMPLE) is None


def _readable(result: float | None) -> bool:
    return result is None or (math.isfinite(result) and result >= 0)


@given(st.text())
def test_any_text_gives_none_or_a_wait(value: str) -> None:
    assert _readable(parse_retry_after(value, EXAMPLE))


@given(st.binary())
def test_any_bytes_give_none_or_a_wait(value: bytes) -> None:
    assert _readable(parse_retry_after(value, EXAMPLE))


@given(st.from_regex(r"\A[ \t]*[0-9 .,:+-GMTADFJMNOSTWaceghilnoprtuvy]{1,40}[ \t]*\Z"))
def test_header_like_text_gives_none_or_a_wait(value: str) -> None:
    assert _readable(parse_retry_after(value, EXAMPLE))


@given(st.integers(0, 10**12))
def test_any_whole_number_of_seconds(n: int) -> None:
    assert parse_retry_after(str(n), EXAMPLE) == float(n)


@given(
    when=st.datetimes(
        min_value=datetime(1900, 1, 1),
        max_value=datetime(9999, 12, 31),
        timezones=st.just(UTC),
    ),
    now=st.floats(0, 4e9),
)
def test_any_imf_fixdate(when: datetime, now: float) -> None:
    header = email.utils.format_datetime(when.replace(microsecond=0), usegmt=True)
    expected = max(0.0, when.replace(microsecond=0).timestamp() - now)
    assert parse_retry_after(header, now) == expected
