"""Cron next-fire computation (kqueue/cron/schedule.py): fields, zones, and both DST transitions."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from kqueue.cron.schedule import Schedule

BERLIN = ZoneInfo("Europe/Berlin")


def at(*fields: int, fold: int = 0) -> int:
    """Epoch seconds of a Berlin wall time (fold=1: its second occurrence)."""
    return int(datetime(*fields, tzinfo=BERLIN, fold=fold).timestamp())  # type: ignore[misc]


def walls(ticks: list[int]) -> list[str]:
    return [datetime.fromtimestamp(t, BERLIN).strftime("%H:%M:%S%z") for t in ticks]


def test_five_fields_fire_on_the_minute_and_six_fields_take_seconds_first() -> None:
    every_five = Schedule("*/5 * * * *", "Europe/Berlin")
    assert walls(every_five.between(at(2024, 5, 1, 10, 2), at(2024, 5, 1, 10, 16), 10)) == [
        "10:05:00+0200", "10:10:00+0200", "10:15:00+0200"]
    every_second = Schedule("* * * * * *")
    start = at(2024, 5, 1, 10, 0)
    assert every_second.between(start, start + 3, 10) == [start + 1, start + 2, start + 3]
    at_thirty = Schedule("30 0 9 * * *", "Europe/Berlin")  # seconds, minutes, hours
    assert walls([at_thirty.next_after(at(2024, 5, 1, 8, 0)) or 0]) == ["09:00:30+0200"]


def test_next_after_is_strictly_after_and_latest_is_at_or_before() -> None:
    hourly = Schedule("0 * * * *", "Europe/Berlin")
    ten = at(2024, 5, 1, 10, 0)
    assert hourly.next_after(ten) == at(2024, 5, 1, 11, 0)
    assert hourly.latest_at_or_before(ten) == ten
    assert hourly.latest_at_or_before(ten - 1) == at(2024, 5, 1, 9, 0)
    assert hourly.latest_at_or_before(ten, not_before=ten) is None  # only ticks after not_before count
    assert hourly.latest_at_or_before(ten + 7200, not_before=ten) == ten + 7200


def test_spring_forward_the_skipped_hour_fires_nothing() -> None:
    # 2024-03-31: Berlin's clocks jump from 02:00 CET to 03:00 CEST; 02:30 never happens that day.
    daily = Schedule("30 2 * * *", "Europe/Berlin")
    start = at(2024, 3, 30, 12, 0)
    fires = daily.between(start, start + 3 * 86400, 10)
    # nothing on the 31st (not at 03:30 either, as Debian's cron would run it), then every day again
    assert [datetime.fromtimestamp(t, BERLIN).strftime("%m-%d %H:%M") for t in fires] == [
        "04-01 02:30", "04-02 02:30"]
    assert daily.next_after(start) == at(2024, 4, 1, 2, 30)
    assert daily.latest_at_or_before(at(2024, 3, 31, 23, 0)) == at(2024, 3, 30, 2, 30)


def test_spring_forward_every_half_hour_skips_only_the_missing_wall_times() -> None:
    half_hourly = Schedule("*/30 * * * *", "Europe/Berlin")
    fires = half_hourly.between(at(2024, 3, 31, 1, 0), at(2024, 3, 31, 4, 0), 10)
    assert walls(fires) == ["01:30:00+0100", "03:00:00+0200", "03:30:00+0200", "04:00:00+0200"]
    # each instant an hour apart or less: nothing fires twice to make up for the gap
    assert len(set(fires)) == len(fires)


def test_fall_back_the_repeated_hour_fires_once() -> None:
    # 2024-10-27: Berlin's clocks go back from 03:00 CEST to 02:00 CET; 02:00-02:59 happens twice.
    daily = Schedule("30 2 * * *", "Europe/Berlin")
    fires = daily.between(at(2024, 10, 26, 12, 0), at(2024, 10, 28, 12, 0), 10)
    assert walls(fires) == ["02:30:00+0200", "02:30:00+0100"]  # the 27th once (first occurrence), the 28th
    assert datetime.fromtimestamp(fires[0], BERLIN).day == 27
    every_quarter = Schedule("*/15 * * * *", "Europe/Berlin")
    fires = every_quarter.between(at(2024, 10, 27, 1, 50), at(2024, 10, 27, 3, 20), 20)
    assert walls(fires) == ["02:00:00+0200", "02:15:00+0200", "02:30:00+0200", "02:45:00+0200",
                            "03:00:00+0100", "03:15:00+0100"]


def test_searches_from_inside_the_repeated_hour_look_past_it() -> None:
    every_minute = Schedule("* * * * *", "Europe/Berlin")
    second_pass = at(2024, 10, 27, 2, 40, fold=1)  # 02:40 CET, after 02:40 CEST already fired
    assert walls([every_minute.next_after(second_pass) or 0]) == ["03:00:00+0100"]
    assert walls([every_minute.latest_at_or_before(second_pass) or 0]) == ["02:59:00+0200"]


@pytest.mark.parametrize(("expression", "tz", "named"), [
    ("61 * * * *", "UTC", "'61 * * * *': bad minute"),
    ("* * *", "UTC", "got 3"),
    ("* * * * * * *", "UTC", "got 7"),
    ("every day", "UTC", "'every day'"),
    ("0 0 30 2 *", "UTC", "'0 0 30 2 *'"),
    ("* * * * *", "Mars/Olympus", "unknown time zone 'Mars/Olympus'"),
    ("* * * * *", "", "unknown time zone ''"),
    ("* * * * *", "../../etc/passwd", "unknown time zone '../../etc/passwd'"),
])
def test_bad_expressions_and_zones_are_refused_with_the_value(expression: str, tz: str, named: str) -> None:
    with pytest.raises(ValueError) as caught:
        Schedule(expression, tz)
    assert named in str(caught.value) and "\n" not in str(caught.value)
