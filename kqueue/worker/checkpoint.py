"""What is settled and may be committed: tracking, held routed records, commits.

A task is settled when it completed, or when its routing (retry, dead letter + status event, a tier
move) is decided. Routed records are held until the partition's commit position passes their
offset, and then written with that commit: a routed record is never durable while an earlier
offset of its partition is not, so a crash can never make a retry or a dead letter happen twice.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from kqueue.core.records import SETTLEMENT_OF_KIND, TP, OutRecord, Settlement
from kqueue.transport.settle import BatchNotCommitted, Settler
from kqueue.worker.partitions import PartitionState, PartitionTable
from kqueue.worker.work import WorkItem

log = logging.getLogger("kqueue.worker")


@dataclass
class SettleCounts:
    """Settled and durable (committed) so far, by outcome; completions count as they finish."""

    completed: int = 0
    retried: int = 0
    dead_lettered: int = 0
    delivered: int = 0  # due tier records moved to their target
    re_tiered: int = 0

    def add(self, outcome: Settlement, n: int = 1) -> None:
        name = outcome.name.lower()
        setattr(self, name, getattr(self, name) + n)


@dataclass(frozen=True)
class CommitResult:
    offsets: dict[TP, int]
    records: int
    seconds: float


class Checkpoint:
    def __init__(self, table: PartitionTable, settler: Settler, interval: float = 0.5) -> None:
        self._table = table
        self._settler = settler
        self.interval = interval
        self._last_commit = time.monotonic()
        self.counts = SettleCounts()
        # Set by a settlement error the settler cannot recover from: nothing is committed after it,
        # the worker stops and the tasks are redelivered.
        self.failed: BaseException | None = None

    # -- tracking ----------------------------------------------------------------------------------
    def track(self, item: WorkItem) -> bool:
        """Claim `item` for its partition's current owner (in offset order); False if not ours."""
        state = self._table.get((item.topic, item.partition))
        if state is None:
            return False
        state.watermark.track(item.offset)
        item.owner = state
        return True

    @staticmethod
    def owns(item: WorkItem) -> bool:
        # A revoked partition's state is dead and a re-assignment gets a new one, so an outcome from
        # an earlier ownership can never settle the current one.
        owner = item.owner
        return owner is not None and owner.live

    # -- settlement --------------------------------------------------------------------------------
    def completed(self, items: Iterable[WorkItem]) -> int:
        settled = 0
        for item in items:
            owner = item.owner
            if owner is not None and owner.live:
                owner.watermark.settle(item.offset)
                settled += 1
        self.counts.completed += settled
        return settled

    def route(self, item: WorkItem, records: list[OutRecord]) -> bool:
        """Settle `item` by `records`, written when the commit position passes it."""
        owner = item.owner
        if owner is None or not owner.live:
            return False
        owner.hold_records(item.offset, records)
        owner.watermark.settle(item.offset)
        return True

    # -- committing --------------------------------------------------------------------------------
    def due(self) -> bool:
        return time.monotonic() - self._last_commit >= self.interval

    def commit(self) -> CommitResult | None:
        """Write the records the positions have passed and commit the positions, together.

        Raises BatchNotCommitted when Kafka refused the batch: it is kept and goes out with the next
        commit. Other errors are fatal and set `failed`."""
        if self.failed is not None:
            return None
        self._last_commit = started = time.monotonic()
        offsets: dict[TP, int] = {}
        moved: list[tuple[PartitionState, int]] = []
        released: list[tuple[PartitionState, int, list[OutRecord]]] = []
        for tp, state in self._table.states.items():
            position = state.watermark.position()
            if position is None or position == state.committed:
                continue
            offsets[tp] = position
            moved.append((state, position))
            released += [(state, offset, records) for offset, records in state.release_records(position)]
        if not offsets:
            return None
        records = [r for _, _, batch in released for r in batch]
        try:
            self._settler.commit(records, offsets)
        except BaseException as exc:
            if not isinstance(exc, BatchNotCommitted):
                self.failed = exc
                raise
            for state, offset, batch in released:  # kept for the next commit, if still ours
                if state.live:
                    state.hold_records(offset, batch)
            raise
        for state, position in moved:
            state.committed = position
        kinds = Counter(batch[0].kind for _, _, batch in released)
        for kind, n in kinds.items():
            self.counts.add(SETTLEMENT_OF_KIND[kind], n)
        return CommitResult(offsets, len(records), time.monotonic() - started)

    def outstanding(self) -> int:
        return sum(s.watermark.outstanding for s in self._table.states.values())
