"""Fetching by priority: a lower lane's partitions pause (`PRIORITY`) while a higher lane has work
waiting and the lower lane holds its share of the worker's unsettled tasks.

Why fetching and not only the executor's choice: the Kafka client hands records out in the order it
fetched them, and it fetches ahead (thousands of records per partition). Records of a high lane
produced while a low lane has a backlog would wait behind everything already fetched of the low
lane. Pausing the low lane's partitions drops what was fetched ahead of them (fetched again on
resume, from the position handed out), so the high records come next, and the worker's bound of
unsettled tasks is left mostly to the higher lane.

A lane waits when the executor has tasks of it ready to start, or the client knows of records it
has not handed out (its cached end offset past the position: no request to Kafka). Running tasks
do not count, nor tasks queued behind their own key's running one: a long task of a high lane must
not hold the low lane back while handler slots idle. The decisions are core/priority.py's
`held_share` and `priority_turn`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from kqueue.core.priority import LANES, LaneWeights, held_share, priority_turn
from kqueue.core.records import TP
from kqueue.worker.partition_table import PartitionTable
from kqueue.worker.partitions import PartitionOwner, PauseReason

# A partition paused only for these fetches again on its own, so its lag is work about to come; one
# held for anything else (a refused record, claims to read, a stuck task) does not hold lower lanes.
_SOON = frozenset({PauseReason.BACKPRESSURE, PauseReason.COMMITS_BEHIND, PauseReason.FAIR_SHARE,
                   PauseReason.PRIORITY})


def _fetching_soon(owner: PartitionOwner) -> bool:
    return owner.pauses <= _SOON


class LaneHolds:
    def __init__(self, table: PartitionTable, weights: LaneWeights, ranks: Mapping[str, int],
                 ready_by_rank: Callable[[], Sequence[int]], cached_lag: Callable[[list[TP]], dict[TP, int]]) -> None:
        self._table = table
        self._weights = weights
        self._ranks = ranks  # lane topic -> rank (core/priority.lane_ranks)
        self._ready_by_rank = ready_by_rank  # the executor's keys ready to start, per lane
        self._cached_lag = cached_lag  # the consumer edge's
        self.held = [False] * len(LANES)  # lanes paused for priority now
        self._owners: list[list[PartitionOwner]] = [[] for _ in LANES]  # per lane, as of the last `apply`
        self._shares: list[int | None] = [None] * len(LANES)

    def apply(self, limit: int) -> None:
        """Pause or resume each lower lane's partitions for priority (`limit`: the unsettled bound)."""
        by_rank: list[list[PartitionOwner]] = [[] for _ in LANES]
        for owner in self._table.states.values():
            rank = self._ranks.get(owner.tp[0])
            if rank is not None:
                by_rank[rank].append(owner)
        self._owners = by_rank
        lowest = max((rank for rank, owners in enumerate(by_rank) if owners), default=0)
        waiting = self._waiting(by_rank, lowest)
        for rank in range(1, len(LANES)):
            share = self._shares[rank] = held_share(self._weights, rank, waiting, limit)
            turn = priority_turn(self._unsettled(rank), share, self.held[rank])
            if turn is not None:
                self.held[rank] = turn
            for owner in by_rank[rank]:  # also partitions assigned since the lane was held
                if self.held[rank]:
                    owner.pause(PauseReason.PRIORITY)
                else:
                    owner.unpause(PauseReason.PRIORITY)

    def check(self) -> None:
        """Every turn of the loop: a lane that reached its share since the last `apply` is held now
        (one poll hands out hundreds of records, and many polls fit in the time between two looks)."""
        for rank in range(1, len(LANES)):
            share = self._shares[rank]
            if share is not None and not self.held[rank] and self._unsettled(rank) >= share:
                self.held[rank] = True
                for owner in self._owners[rank]:
                    owner.pause(PauseReason.PRIORITY)

    def held_unsettled(self) -> int:
        """Unsettled tasks of the held lanes. They do not count towards the worker's bound: a held lane
        fetches nothing more and works its tasks off, and its backlog must not keep the higher lane
        from being fetched (at most twice the bound is then unsettled)."""
        return sum(self._unsettled(rank) for rank, held in enumerate(self.held) if held)

    def _unsettled(self, rank: int) -> int:
        return sum(owner.outstanding for owner in self._owners[rank])

    def _waiting(self, by_rank: list[list[PartitionOwner]], lowest: int) -> list[bool]:
        """Which lanes have work waiting. Only lanes above the lowest owned one matter, and the lag is
        asked for only where the executor has nothing of the lane ready."""
        waiting = [count > 0 for count in self._ready_by_rank()]
        unknown = [owner.tp for rank in range(lowest) if not waiting[rank]
                   for owner in by_rank[rank] if _fetching_soon(owner)]
        if unknown:
            for tp, lag in self._cached_lag(unknown).items():
                if lag > 0:
                    waiting[self._ranks[tp[0]]] = True
        return waiting
