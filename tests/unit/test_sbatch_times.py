"""Time limits; expected values are the TimeLimit scontrol showed for sbatch 22.05.8 held jobs."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sunkbridge.sbatch import (
    UNLIMITED,
    SbatchError,
    format_minutes,
    format_seconds,
    format_squeue_seconds,
    parse_time_limit,
    parse_time_seconds,
)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("0", "UNLIMITED"),
        ("1", "00:01:00"),
        ("59", "00:59:00"),
        ("60", "01:00:00"),
        ("1440", "1-00:00:00"),
        ("10:00", "00:10:00"),
        ("45:30", "00:46:00"),  # seconds round up
        ("0:30", "00:01:00"),
        ("0:0", "UNLIMITED"),
        ("1:00:00", "01:00:00"),
        ("1:00:01", "01:01:00"),
        ("25:00:00", "1-01:00:00"),
        ("1-0", "1-00:00:00"),
        ("1-12", "1-12:00:00"),
        ("1-2:30", "1-02:30:00"),
        ("1-2:30:15", "1-02:31:00"),
        ("2-00:00:00", "2-00:00:00"),
        ("1-", "1-00:00:00"),
        ("1:60", "00:02:00"),
        ("1:99:99", "02:41:00"),
        ("0-0:0:1", "00:01:00"),
        ("0-1", "01:00:00"),
        ("5-3", "5-03:00:00"),
        ("INFINITE", "UNLIMITED"),
        ("infinite", "UNLIMITED"),
        ("UNLIMITED", "UNLIMITED"),
        ("Unlimited", "UNLIMITED"),
        ("-1", "UNLIMITED"),
    ],
)
def test_time_limit_matches_scontrol(text: str, shown: str) -> None:
    assert format_minutes(parse_time_limit(text)) == shown


@pytest.mark.parametrize(
    "text",
    [
        "x",
        "1:2:3:4",
        "1-2-3",
        "-1-2",
        "1-2:3:4:5",
        " 5",
        "5 ",
        "",
        "1:-1",
        "+5",
        "1.5",
        "5m",
        "11:",
        "111::",
        ":5",
        "1::2",
        "1-2:",
        "12-:3",
        "-",
        "-2",
        "-5",
        "100000000",
    ],
)
def test_time_limit_rejections(text: str) -> None:
    with pytest.raises(SbatchError) as info:
        parse_time_limit(text, "--time")
    assert str(info.value).startswith("--time=")


def test_seconds_are_kept_by_parse_time_seconds() -> None:
    assert parse_time_seconds("1:30") == 90
    assert parse_time_seconds("0") == 0
    assert parse_time_seconds("INFINITE") == UNLIMITED


@pytest.mark.parametrize(
    ("seconds", "scontrol", "squeue"),
    [
        (0, "00:00:00", "0:00"),
        (59, "00:00:59", "0:59"),
        (61, "00:01:01", "1:01"),
        (3600, "01:00:00", "1:00:00"),
        (86399, "23:59:59", "23:59:59"),
        (86400, "1-00:00:00", "1-00:00:00"),
        (90061, "1-01:01:01", "1-01:01:01"),
    ],
)
def test_formats(seconds: int, scontrol: str, squeue: str) -> None:
    assert format_seconds(seconds) == scontrol
    assert format_squeue_seconds(seconds) == squeue


def test_unlimited_formats() -> None:
    assert format_minutes(UNLIMITED) == "UNLIMITED"
    assert format_seconds(UNLIMITED) == "UNLIMITED"
    assert format_squeue_seconds(UNLIMITED) == "UNLIMITED"


@given(st.integers(min_value=1, max_value=24854 * 1440))
def test_parse_of_format_is_identity(minutes: int) -> None:
    assert parse_time_limit(format_minutes(minutes)) == minutes


@given(st.integers(min_value=1, max_value=10**6))
def test_parse_of_squeue_format_is_identity(seconds: int) -> None:
    assert parse_time_seconds(format_squeue_seconds(seconds)) == seconds


@given(
    st.integers(min_value=0, max_value=30),
    st.integers(min_value=0, max_value=23),
    st.integers(min_value=0, max_value=59),
    st.integers(min_value=0, max_value=59),
)
def test_day_form_rounds_seconds_up(d: int, h: int, m: int, s: int) -> None:
    total = d * 86400 + h * 3600 + m * 60 + s
    expected = -(-total // 60) or UNLIMITED
    assert parse_time_limit(f"{d}-{h}:{m}:{s}") == expected
