"""What a worker may hold, and the pauses that keep it there.

Four bounds, each with a pause reason on the partition owners, paused at the bound and resumed at
half of it (so a partition does not flap at the edge):
- unsettled tasks in the worker (`BACKPRESSURE`, task partitions);
- routed records waiting for a commit, HELD_PER_INFLIGHT times that (`COMMITS_BEHIND`, every
  partition: while commits fail a due tier backlog must not be held whole);
- a task partition's fair share of the unsettled bound when the worker owns several and holds more
  than FAIR_AFTER seconds of work (`FAIR_SHARE`, set by the admission as it hands records out,
  lifted here);
- MAX_AHEAD offsets past a partition's commit position (`AHEAD`: one stuck task must not make the
  worker remember every later offset; core/completed.py says why the number). The admission cuts
  the partition at `stop_at`, which this check moves on with the position.
And a lower priority lane's share of the unsettled bound while a higher lane has work waiting
(`PRIORITY`, worker/lane_holds.py), checked with the partitions; tasks waiting for a rate limit's
token count apart, against a bound of their own (`RATE`, worker/ratelimits.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from kqueue.core import completed
from kqueue.worker.lane_holds import LaneHolds
from kqueue.worker.partition_table import PartitionTable
from kqueue.worker.partitions import PauseReason

if TYPE_CHECKING:
    from kqueue.worker.ratelimits import RateHolds

HELD_PER_INFLIGHT = 8
NO_SHARE = 1 << 62  # one task partition: the worker's own bound is all there is
# Seconds of work a full bound of unsettled tasks must be for partitions to be held to a share. Low
# enough that the executor's first guess of handler time (1 ms, until measured) turns it on: a
# backlog's first fill then cannot be one partition's alone.
FAIR_AFTER = 0.2
CHECK_PARTITIONS_EVERY = 0.02  # seconds between looks at each partition's share and distance ahead


def inflight_limit(max_inflight: int | None, batch_size: int, concurrency: int) -> int:
    return max_inflight or max(batch_size * 4, concurrency * 4)


def fair_share(limit: int, concurrency: int, task_partitions: int, backlog_seconds: float) -> int:
    """Unsettled tasks one task partition may have: an equal part of the worker's bound, at least
    enough to keep every handler slot busy. Only when a full bound is more than FAIR_AFTER seconds
    of work (`backlog_seconds`): with less, no task waits long whichever partition it came from, and
    holding a partition back costs a refetch (a no-op drain fell to 0.12x of the raw loop when every
    partition cycled)."""
    if task_partitions <= 1 or backlog_seconds < FAIR_AFTER:
        return NO_SHARE
    return max(concurrency, limit // task_partitions)


def crossing(value: int, bound: int, paused: bool) -> bool | None:
    """True: pause (at the bound); False: resume (at half of it); None: leave as it is."""
    if value >= bound and not paused:
        return True
    if value <= bound // 2 and paused:
        return False
    return None


class Bounds:
    def __init__(self, table: PartitionTable, limit: int, concurrency: int,
                 seconds_per_task: Callable[[], float], lanes: LaneHolds | None = None,
                 rates: RateHolds | None = None) -> None:
        self._table = table
        self._lanes = lanes
        self._rates = rates
        self.limit = limit
        self._concurrency = concurrency
        self._seconds_per_task = seconds_per_task  # the executor's measure of handler time
        self._next_check = 0.0
        self._share = NO_SHARE

    def share(self) -> int:
        """The current fair share (recomputed with the partitions' check, about every 20 ms)."""
        return self._share

    def _compute_share(self) -> int:
        # The work a full bound holds (not what is held now): the share is in force from the first
        # record of a backlog, before one partition's records can fill the worker.
        backlog = self.limit * self._seconds_per_task() / self._concurrency
        return fair_share(self.limit, self._concurrency, self._table.task_partitions(), backlog)

    def apply(self) -> None:
        """Pause or resume for the worker-wide bounds now, and each partition's about every 20 ms."""
        table, lanes = self._table, self._lanes
        unsettled = table.unsettled()
        if lanes is not None:
            lanes.check()
            if any(lanes.held):
                unsettled -= lanes.held_unsettled()
        if self._rates is not None:
            self._rates.check(self.limit)
            unsettled -= self._rates.waiting()
        for reason, value, bound in ((PauseReason.BACKPRESSURE, unsettled, self.limit),
                                     (PauseReason.COMMITS_BEHIND, table.held(), self.limit * HELD_PER_INFLIGHT)):
            turn = crossing(value, bound, table.everywhere(reason))
            if turn is not None:
                table.set_everywhere(reason, turn)
        now = time.monotonic()
        if now >= self._next_check:
            self._next_check = now + CHECK_PARTITIONS_EVERY
            self._share = self._compute_share()
            self._check_partitions(self._share)
            if lanes is not None:
                lanes.apply(self.limit)
            if self._rates is not None:
                self._rates.apply(self.limit)

    def _check_partitions(self, share: int) -> None:
        max_ahead = completed.MAX_AHEAD
        for owner in self._table.states.values():
            if owner.is_tier:
                continue
            if PauseReason.FAIR_SHARE in owner.pauses:
                if owner.outstanding <= share // 2:
                    owner.unpause(PauseReason.FAIR_SHARE)
            elif owner.outstanding >= share:
                owner.pause(PauseReason.FAIR_SHARE)  # over it already when the share came into force
            position = owner.watermark.position()
            if position is None:
                continue
            owner.stop_at = position + max_ahead  # the admission cuts there (the position only moves on)
            if PauseReason.AHEAD in owner.pauses and owner.ahead() <= max_ahead // 2:
                owner.unpause(PauseReason.AHEAD)
