"""Durations as people write them: parse_duration, format_duration, to_seconds."""

from __future__ import annotations

from datetime import timedelta

import pytest

from kqueue.core.durations import format_duration, parse_duration, to_seconds
from kqueue.core.names import DEFAULT_DELAY_TIERS

# -- parse_duration -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90.0),
        ("2m", 120.0),
        ("1h30m", 5400.0),
        ("500ms", 0.5),
        ("1.5", 1.5),
        ("1d", 86400.0),
        ("30", 30.0),
        ("0", 0.0),
        ("1s", 1.0),
        ("6h", 21600.0),
        ("1m30s", 90.0),
        ("1d2h3m4s5ms", 86400 + 7200 + 180 + 4 + 0.005),
        ("2.5m", 150.0),
        ("0.5h", 1800.0),
    ],
)
def test_parse_duration_accepted_forms(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", [" 90s ", "90S", "1H30M", " 1 h 30 m ", "\t2m\n", "500MS", "1 D"])
def test_parse_duration_ignores_spaces_and_case(text: str) -> None:
    expected = {"90s": 90.0, "1h30m": 5400.0, "2m": 120.0, "500ms": 0.5, "1d": 86400.0}
    key = text.strip().lower().replace(" ", "")
    assert parse_duration(text) == pytest.approx(expected[key])


def test_parse_duration_ms_is_not_read_as_minutes() -> None:
    # "ms" must win over "m" followed by a stray "s"
    assert parse_duration("5ms") == pytest.approx(0.005)
    assert parse_duration("5m") == pytest.approx(300.0)


def test_parse_duration_returns_float() -> None:
    assert isinstance(parse_duration("2m"), float)
    assert isinstance(parse_duration("7"), float)


@pytest.mark.parametrize("text", ["", "   ", "abc", "10x", "5s5", "-1s", "s", "1h30", "ms", "1.s", "1..5s", "h1"])
def test_parse_duration_rejects_garbage(text: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(text)
    message = str(info.value)
    assert repr(text) in message  # names what was wrong
    for form in ("500ms", "30s", "2m", "1h30m", "1d"):  # ... and what would be right
        assert form in message


@pytest.mark.parametrize("text", DEFAULT_DELAY_TIERS)
def test_parse_duration_round_trips_default_tier_names(text: str) -> None:
    assert format_duration(parse_duration(text)) == text


# -- format_duration ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (1, "1s"),
        (5, "5s"),
        (30, "30s"),
        (90, "90s"),  # not a whole number of minutes
        (120, "2m"),
        (600, "10m"),
        (3600, "1h"),
        (5400, "90m"),
        (21600, "6h"),
        (86400, "1d"),
        (172800, "2d"),
        (90000, "25h"),
        (1.0, "1s"),
        (60.0, "1m"),
        (0.5, "500ms"),
        (1.5, "1500ms"),
        (0.001, "1ms"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize("seconds", [1, 5, 30, 45, 60, 120, 600, 3600, 7200, 21600, 86400, 0.25])
def test_format_then_parse_round_trips(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds)


# -- to_seconds -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (timedelta(minutes=2), 120.0),
        (timedelta(milliseconds=250), 0.25),
        (timedelta(days=1, seconds=1), 86401.0),
        (timedelta(0), 0.0),
        ("90s", 90.0),
        ("1h30m", 5400.0),
        ("2.5", 2.5),
        (1.5, 1.5),
        (3, 3.0),
        (0, 0.0),
    ],
)
def test_to_seconds(value: timedelta | float | int | str, seconds: float) -> None:
    result = to_seconds(value)
    assert isinstance(result, float)
    assert result == pytest.approx(seconds)


def test_to_seconds_negative_timedelta_is_kept_negative() -> None:
    # Callers (schedule_ms) reject negatives; to_seconds must not hide the sign.
    assert to_seconds(timedelta(seconds=-5)) == -5.0


def test_to_seconds_bad_string_raises_value_error() -> None:
    with pytest.raises(ValueError, match="not a duration"):
        to_seconds("soon")
