"""Which ticks the leader fires now. Pure: the schedule, what the topic says, the clock, decided here.

A tick missed while some scheduler lived (the leader died and another took over, or the leader
could not reach Kafka for a while) was not the schedulers' choice: it fires, late. A stretch of
ticks missed while no scheduler lived is an outage: with `catch_up` its latest tick fires once,
without it none does. Either way every tick up to now is then `handled`, so no later leader
considers it again.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from kqueue.cron.log import Beat, Progress
from kqueue.cron.schedule import Schedule

BEAT_EVERY = 1.0  # seconds between a scheduler's beats
# A scheduler killed outright sent no last beat: it counts as alive up to this long after its last one.
BEAT_SLACK = 2 * BEAT_EVERY
# Ticks missed while schedulers lived fire late; past this many (a leader cut off from Kafka for a
# long time on a per-second schedule) only the latest ones fire, and a warning says how many did not.
MAX_BACKFILL = 1000

Interval = tuple[float, float]  # epoch seconds, both ends included


@dataclass(frozen=True)
class TickPlan:
    fire: list[int]  # ticks to enqueue, in order
    handled: int | None  # the progress to write with them (None: nothing to write)
    anchored: bool = False  # no usable progress: the schedule starts from now
    dropped: int = 0  # ticks missed while schedulers lived that were not fired (past MAX_BACKFILL)
    outages: list[Interval] = field(default_factory=list)  # stretches no scheduler lived through


def alive(beats: Iterable[Beat], own_since_ms: int, now: float) -> list[Interval]:
    """When some scheduler lived, from their beats and this one's own start, merged."""
    spans = [(own_since_ms / 1000, now)]
    for beat in beats:
        end = beat.at_ms / 1000 + (0.0 if beat.stopped else BEAT_SLACK)
        spans.append((beat.since_ms / 1000, min(end, now)))
    spans.sort()
    merged: list[Interval] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def plan_ticks(schedule: Schedule, progress: Progress | None, now: int, lived: list[Interval],
               catch_up: bool) -> TickPlan:
    """The ticks in (progress.handled, now] to fire, given when schedulers lived (`alive`)."""
    if progress is None or (progress.expression, progress.tz) != (schedule.expression, schedule.tz_name):
        return TickPlan([], now, anchored=True)  # new or changed schedule: its ticks start after now
    handled = progress.handled
    latest = schedule.latest_at_or_before(now, not_before=handled)
    if latest is None:
        return TickPlan([], None)
    fire: deque[int] = deque(maxlen=MAX_BACKFILL)  # past the cap, the oldest fall out
    appended = 0
    outages: list[Interval] = []
    cursor = handled  # every tick at or before it is decided

    def outage(after: int, upto: int) -> None:
        nonlocal appended
        if upto <= after:
            return
        outages.append((after, upto))
        last = schedule.latest_at_or_before(upto, not_before=after)
        if catch_up and last is not None:
            fire.append(last)
            appended += 1

    for start, end in lived:
        first, last_covered = math.ceil(start), min(math.floor(end), now)
        if last_covered <= cursor:
            continue
        outage(cursor, min(first - 1, now))
        for tick in schedule.after(max(cursor, first - 1)):
            if tick > last_covered:
                break
            fire.append(tick)
            appended += 1
        cursor = last_covered
        if cursor >= now:
            break
    outage(cursor, now)
    return TickPlan(list(fire), latest, dropped=appended - len(fire), outages=outages)
