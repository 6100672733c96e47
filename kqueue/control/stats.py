"""`kqueue stats`: a queue's depth (the group's lag per lane and tier), DLQ size, members, rates and
whether it is paused, read from Kafka alone, so it works with no worker running and needs no metrics port."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from kqueue.control.pauses import read_controls
from kqueue.core import names
from kqueue.core.control import Paused
from kqueue.core.durations import parse_duration
from kqueue.core.queue_limits import QueueLimit
from kqueue.observe.lag import lag_key
from kqueue.transport.admin import existing_topics, make_admin
from kqueue.transport.inspect import PartitionDepth, read_records, topic_depths


@dataclass(frozen=True)
class LaneStats:
    topic: str
    lane: str  # high / normal / low, "" for a delay tier
    tier: str  # the delay tier, "" for a lane
    partitions: int
    records: int  # stored now
    committed: int  # the group's committed positions, summed (grows as tasks settle)
    lag: int


@dataclass(frozen=True)
class QueueStats:
    queue: str
    group: str
    at: float
    lanes: list[LaneStats]
    dlq_records: int  # dead letters stored (exact up to EXACT_DLQ_COUNT offsets, else offsets incl. markers)
    dlq_end: int  # the DLQ's end offsets, summed (grows with every dead letter)
    members: int
    rates: dict[str, float] = field(default_factory=dict)
    paused: Paused | None = None  # {"since": epoch ms, "reason"} in JSON; read only when asked for
    limit: QueueLimit | None = None  # the queue-wide rate limit; read with `paused`

    @property
    def lag(self) -> int:
        return sum(lane.lag for lane in self.lanes)

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "lag": self.lag, "limit": self.limit.as_json() if self.limit is not None else None}


def summarize(queue: str, group: str, depths: list[PartitionDepth], members: int, prefix: str = "",
              at: float | None = None) -> QueueStats:
    """Group the partitions' depths into lanes and tiers (pure: the numbers come from `depths`)."""
    dlq = names.dlq_topic(queue, prefix)
    lanes: list[LaneStats] = []
    for topic in sorted({d.topic for d in depths if d.topic != dlq}, key=lambda t: _order(lag_key(t, prefix))):
        mine = [d for d in depths if d.topic == topic]
        _, lane, tier = lag_key(topic, prefix)
        committed = sum(d.committed for d in mine if d.committed is not None and d.committed >= 0)
        lanes.append(LaneStats(topic, lane, tier, len(mine), sum(d.records for d in mine), committed,
                               sum(d.lag for d in mine)))
    dead = [d for d in depths if d.topic == dlq]
    return QueueStats(queue, group, time.time() if at is None else at, lanes, sum(d.records for d in dead),
                      sum(d.high for d in dead), members)


def _order(key: tuple[str, str, str]) -> tuple[int, float]:
    _, lane, tier = key
    if lane:
        return (0, float(names.PRIORITIES.index(lane)))
    try:
        return (1, parse_duration(tier))
    except ValueError:
        return (2, 0.0)


def with_rates(previous: QueueStats | None, current: QueueStats) -> QueueStats:
    """Per-second rates between two reads: tasks settled from the lanes, and dead letters."""
    if previous is None or current.at <= previous.at:
        return current
    seconds = current.at - previous.at
    settled = sum(lane.committed for lane in current.lanes if lane.lane) - sum(
        lane.committed for lane in previous.lanes if lane.lane)
    rates = {"settled_per_s": round(max(0, settled) / seconds, 2),
             "dead_letters_per_s": round(max(0, current.dlq_end - previous.dlq_end) / seconds, 2)}
    return dataclasses.replace(current, rates=rates)


# Transaction markers take offsets too, so offsets overcount letters; below this span they are counted.
EXACT_DLQ_COUNT = 10_000


class QueueNotFound(LookupError):
    pass


def read_queue_stats(bootstrap: str, queue: str, group: str, prefix: str = "", timeout: float = 10.0,
                     previous: QueueStats | None = None, with_pause: bool = False) -> QueueStats:
    """The queue's figures now; with `previous` (a --watch refresh) the dead letters are counted again
    only if the DLQ has grown since; `with_pause`: whether it is paused, and its queue-wide limit, too (reads
    _kqueue.control)."""
    admin = make_admin(bootstrap)
    topics = existing_topics(admin, timeout)
    main = names.main_topic(queue, prefix)
    if main not in topics:
        raise QueueNotFound(f"queue {queue!r} does not exist (no topic {main})")
    mine = [t for t in topics if names.queue_of_topic(t, prefix) == queue and (t == main or t.startswith(f"{main}."))
            and not names.is_dedup_topic(t)]
    depths = topic_depths(bootstrap, mine, group, timeout)
    stats = summarize(queue, group, depths, _members(admin, group, timeout), prefix)
    if previous is not None and previous.dlq_end == stats.dlq_end:
        stats = dataclasses.replace(stats, dlq_records=previous.dlq_records)
    elif 0 < stats.dlq_records <= EXACT_DLQ_COUNT:
        letters = len(read_records(bootstrap, [names.dlq_topic(queue, prefix)], timeout))
        stats = dataclasses.replace(stats, dlq_records=letters)
    if with_pause:
        controls = read_controls(bootstrap, prefix, timeout)
        stats = dataclasses.replace(stats, paused=controls.get(queue), limit=controls.limits.get(queue))
    return stats


def _members(admin: Any, group: str, timeout: float) -> int:
    try:
        return len(admin.describe_consumer_groups([group])[group].result(timeout=timeout).members)
    except Exception:  # no such group yet: no members
        return 0
