"""What a worker may hold, and the pauses that keep it there.

Four bounds, each with a pause reason on the partition owners, paused at the bound and resumed at
half of it (so a partition does not flap at the edge):
- unsettled tasks in the worker (`BACKPRESSURE`, task partitions);
- routed records waiting for a commit, HELD_PER_INFLIGHT times that (`COMMITS_BEHIND`, every
  partition: while commits fail a due tier backlog must not be held whole);
- a task partition's fair share of the unsettled bound when the worker owns several (`FAIR_SHARE`,
  set by the admission as it hands records out, lifted here);
- MAX_AHEAD offsets past a partition's commit position (`AHEAD`: one stuck task must not make the
  worker remember every later offset; core/completed.py says why the number).
"""

from __future__ import annotations

import time

from kqueue.core import completed
from kqueue.worker.partitions import PartitionTable, PauseReason

HELD_PER_INFLIGHT = 8
NO_SHARE = 1 << 62  # one task partition: the worker's own bound is all there is
CHECK_PARTITIONS_EVERY = 0.02  # seconds between looks at each partition's share and distance ahead


def inflight_limit(max_inflight: int | None, batch_size: int, concurrency: int) -> int:
    return max_inflight or max(batch_size * 4, concurrency * 4)


def fair_share(limit: int, concurrency: int, task_partitions: int) -> int:
    """Unsettled tasks one task partition may have: an equal part of the worker's bound, at least
    enough to keep every handler slot busy."""
    if task_partitions <= 1:
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
    def __init__(self, table: PartitionTable, limit: int, concurrency: int) -> None:
        self._table = table
        self.limit = limit
        self._concurrency = concurrency
        self._next_check = 0.0

    def share(self) -> int:
        return fair_share(self.limit, self._concurrency, self._table.task_partitions())

    def apply(self) -> None:
        """Pause or resume for the worker-wide bounds now, and each partition's about every 20 ms."""
        table = self._table
        for reason, value, bound in ((PauseReason.BACKPRESSURE, table.unsettled(), self.limit),
                                     (PauseReason.COMMITS_BEHIND, table.held(), self.limit * HELD_PER_INFLIGHT)):
            turn = crossing(value, bound, table.everywhere(reason))
            if turn is not None:
                table.set_everywhere(reason, turn)
        now = time.monotonic()
        if now >= self._next_check:
            self._next_check = now + CHECK_PARTITIONS_EVERY
            self._check_partitions(self.share())

    def _check_partitions(self, share: int) -> None:
        max_ahead = completed.MAX_AHEAD
        for owner in self._table.states.values():
            if owner.is_tier:
                continue
            if PauseReason.FAIR_SHARE in owner.pauses and owner.outstanding <= share // 2:
                owner.unpause(PauseReason.FAIR_SHARE)
            turn = crossing(owner.ahead(), max_ahead, PauseReason.AHEAD in owner.pauses)
            if turn is True:
                owner.pause(PauseReason.AHEAD)
            elif turn is False:
                owner.unpause(PauseReason.AHEAD)
