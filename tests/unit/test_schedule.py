"""schedule_ms: when a task enqueued with `delay=` or `run_at=` may start (DESIGN.md section 4)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from kqueue.sdk.task import Delay, schedule_ms

NOW = 1_700_000_000_000  # 2023-11-14T22:13:20Z
NOW_DT = datetime.fromtimestamp(NOW / 1000, tz=UTC)


def test_no_delay_no_run_at_runs_now() -> None:
    assert schedule_ms(NOW, None, None) is None


@pytest.mark.parametrize(
    ("delay", "expected_ms"),
    [
        (90, 90_000),
        (1.5, 1_500),
        (0.25, 250),
        (timedelta(minutes=2), 120_000),
        (timedelta(hours=1, milliseconds=5), 3_600_005),
        ("90s", 90_000),
        ("1h30m", 5_400_000),
        ("500ms", 500),
        ("2.5", 2_500),
        ("1d", 86_400_000),
    ],
)
def test_delay_forms(delay: Delay, expected_ms: int) -> None:
    assert schedule_ms(NOW, delay, None) == NOW + expected_ms


@pytest.mark.parametrize("delay", [0, 0.0, timedelta(0), "0s", "0"])
def test_zero_delay_runs_now(delay: Delay) -> None:
    assert schedule_ms(NOW, delay, None) is None


@pytest.mark.parametrize("delay", [-1, -0.5, timedelta(seconds=-1), "-1"])
def test_negative_delay_raises(delay: Delay) -> None:
    with pytest.raises(ValueError, match=r"negative|not a duration"):
        schedule_ms(NOW, delay, None)


@pytest.mark.parametrize("delay", ["-1s", "soon", "10x"])
def test_unparseable_delay_raises(delay: str) -> None:
    with pytest.raises(ValueError):
        schedule_ms(NOW, delay, None)


def test_delay_is_never_cut_short_by_float_rounding() -> None:
    # 1.001 * 1000 == 1000.9999999999999: truncating it would start the task 1 ms early.
    assert schedule_ms(NOW, 1.001, None) == NOW + 1001


@pytest.mark.parametrize(
    "run_at",
    [
        NOW_DT + timedelta(seconds=90),
        NOW_DT + timedelta(days=3, milliseconds=7),
        (NOW_DT + timedelta(minutes=5)).astimezone(timezone(timedelta(hours=-7))),
        (NOW_DT + timedelta(minutes=5)).astimezone(timezone(timedelta(hours=5, minutes=30))),
    ],
)
def test_run_at_aware_datetime(run_at: datetime) -> None:
    expected = NOW + round((run_at - NOW_DT).total_seconds() * 1000)
    assert schedule_ms(NOW, None, run_at) == expected


def test_run_at_time_zone_does_not_change_the_instant() -> None:
    utc = NOW_DT + timedelta(hours=2)
    tokyo = utc.astimezone(timezone(timedelta(hours=9)))
    assert schedule_ms(NOW, None, utc) == schedule_ms(NOW, None, tokyo) == NOW + 7_200_000


@pytest.mark.parametrize("ms", [1, 1_001, 59_999, 123_456])
def test_run_at_millisecond_precision(ms: int) -> None:
    assert schedule_ms(NOW, None, NOW_DT + timedelta(milliseconds=ms)) == NOW + ms


@pytest.mark.parametrize("past", [timedelta(0), timedelta(milliseconds=-1), timedelta(days=-400)])
def test_run_at_now_or_past_runs_now(past: timedelta) -> None:
    assert schedule_ms(NOW, None, NOW_DT + past) is None


def test_naive_run_at_raises() -> None:
    naive = datetime(2030, 1, 1, 12, 0, 0)
    with pytest.raises(ValueError, match="timezone-aware"):
        schedule_ms(NOW, None, naive)


def test_naive_run_at_in_the_past_still_raises() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        schedule_ms(NOW, None, datetime(2000, 1, 1))


@pytest.mark.parametrize("delay", [5, "5s", timedelta(seconds=5), 0])
def test_delay_and_run_at_together_raise(delay: Delay) -> None:
    with pytest.raises(ValueError, match="not both"):
        schedule_ms(NOW, delay, NOW_DT + timedelta(minutes=1))
