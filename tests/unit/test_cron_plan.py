"""Which ticks a leader fires (kqueue/cron/plan.py) and what the cron topic's records say (log.py)."""

from __future__ import annotations

from kqueue.cron.log import Beat, CronLog, Progress, member_key, progress_key
from kqueue.cron.plan import BEAT_SLACK, MAX_BACKFILL, alive, plan_ticks
from kqueue.cron.schedule import Schedule

EVERY_SECOND = Schedule("* * * * * *")
DAILY_9 = Schedule("0 9 * * *", "Europe/Berlin")
T = 1_800_000_000  # a whole minute


def progress(handled: int, schedule: Schedule = EVERY_SECOND, fired: int | None = None) -> Progress:
    return Progress(handled, fired, schedule.expression, schedule.tz_name, handled * 1000)


def beat(since: float, at: float, stopped: bool = False, member: str = "m") -> Beat:
    return Beat(member, int(since * 1000), int(at * 1000), 1, "host", leader=False, stopped=stopped)


def test_a_schedule_without_progress_starts_after_now() -> None:
    plan = plan_ticks(EVERY_SECOND, None, T, [(T - 100, T)], catch_up=True)
    assert plan.fire == [] and plan.handled == T and plan.anchored


def test_a_changed_expression_starts_afresh_instead_of_firing_the_new_ticks_it_missed() -> None:
    old = Progress(T - 3600, T - 3600, "0 * * * *", "UTC", 0)
    plan = plan_ticks(EVERY_SECOND, old, T, [(T - 7200, T)], catch_up=True)
    assert plan.fire == [] and plan.handled == T and plan.anchored


def test_the_due_tick_fires_and_becomes_the_progress() -> None:
    plan = plan_ticks(EVERY_SECOND, progress(T - 1), T, [(T - 60, T)], catch_up=True)
    assert plan.fire == [T] and plan.handled == T and not plan.outages


def test_nothing_due_writes_nothing() -> None:
    plan = plan_ticks(DAILY_9, progress(T, DAILY_9), T + 60, [(T - 60, T + 60)], catch_up=True)
    assert plan.fire == [] and plan.handled is None


def test_ticks_missed_while_schedulers_lived_all_fire_late_in_order() -> None:
    # the leader died after firing T; the others lived on; the new one leads 8 s later
    lived = alive([beat(T - 300, T + 7.5), beat(T - 200, T + 8)], own_since_ms=(T - 250) * 1000, now=T + 8)
    plan = plan_ticks(EVERY_SECOND, progress(T), T + 8, lived, catch_up=False)
    assert plan.fire == list(range(T + 1, T + 9)) and plan.handled == T + 8 and not plan.outages


def test_an_outage_fires_its_latest_tick_once_with_catch_up() -> None:
    # every scheduler stopped cleanly at T + 2; one started at T + 10 and leads from T + 12
    lived = alive([beat(T - 100, T + 2, stopped=True)], own_since_ms=(T + 10) * 1000, now=T + 12)
    plan = plan_ticks(EVERY_SECOND, progress(T + 2), T + 12, lived, catch_up=True)
    assert plan.fire == [T + 9, T + 10, T + 11, T + 12]  # T+9 for the outage T+3..T+9, then its own life
    assert plan.outages == [(T + 2, T + 9)] and plan.handled == T + 12


def test_an_outage_fires_nothing_without_catch_up() -> None:
    lived = alive([beat(T - 100, T + 2, stopped=True)], own_since_ms=(T + 10) * 1000, now=T + 12)
    plan = plan_ticks(EVERY_SECOND, progress(T + 2), T + 12, lived, catch_up=False)
    assert plan.fire == [T + 10, T + 11, T + 12] and plan.handled == T + 12


def test_a_daily_schedule_after_three_days_down_fires_once_or_not_at_all() -> None:
    day = 86400
    first = DAILY_9.next_after(T) or 0
    now = first + 3 * day + 3600  # three 9 o'clocks later, plus an hour
    lived = alive([beat(T - day, T, stopped=True)], own_since_ms=now * 1000, now=now)
    caught = plan_ticks(DAILY_9, progress(T, DAILY_9), now, lived, catch_up=True)
    assert caught.fire == [first + 3 * day] and caught.handled == first + 3 * day
    skipped = plan_ticks(DAILY_9, progress(T, DAILY_9), now, lived, catch_up=False)
    assert skipped.fire == [] and skipped.handled == first + 3 * day  # recorded as dealt with


def test_a_killed_scheduler_counts_as_alive_for_a_beat_after_its_last_one() -> None:
    lived = alive([beat(T - 100, T)], own_since_ms=(T + 20) * 1000, now=T + 20)
    assert lived == [(T - 100, T + BEAT_SLACK), (T + 20, T + 20)]
    stopped = alive([beat(T - 100, T, stopped=True)], own_since_ms=(T + 20) * 1000, now=T + 20)
    assert stopped == [(T - 100, T), (T + 20, T + 20)]
    overlapping = alive([beat(T - 100, T), beat(T - 1, T + 10, member="b")], (T + 5) * 1000, T + 20)
    assert overlapping == [(T - 100, T + 20)]


def test_a_long_backlog_fires_only_the_latest_ticks_and_says_how_many_it_dropped() -> None:
    now = T + MAX_BACKFILL + 500
    plan = plan_ticks(EVERY_SECOND, progress(T), now, [(T - 1, now)], catch_up=True)
    assert len(plan.fire) == MAX_BACKFILL and plan.fire[-1] == now and plan.dropped == 500


def test_the_log_keeps_the_latest_record_of_each_key_of_its_app_only() -> None:
    log = CronLog("shop")
    log.apply(progress_key("shop", "report"), progress(T).encode())
    log.apply(progress_key("shop", "report"), progress(T + 5, fired=T + 5).encode())
    log.apply(progress_key("other", "report"), progress(T + 9).encode())
    log.apply(member_key("shop", "m1"), Beat("m1", 1, 2, 3, "h", leader=True).encode())
    log.apply(member_key("shop", "m2"), Beat("m2", 1, 2, 3, "h", leader=False).encode())
    log.apply(member_key("shop", "m2"), None)  # a tombstone forgets it
    log.apply(progress_key("shop", "broken"), b"not json")
    assert log.progress == {"report": progress(T + 5, fired=T + 5)}
    assert list(log.members) == ["m1"]
    assert log.leader(now_ms=2, silent_after_ms=1000) is not None
    assert log.leader(now_ms=5000, silent_after_ms=1000) is None  # silent too long: not leading
