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
from dataclasses import dataclass, field
from typing import Any

from kqueue.core.completed import encode as encode_completed
from kqueue.core.records import SETTLEMENT_OF_KIND, TP, OutRecord, Settlement
from kqueue.transport.settle import BatchNotCommitted, Settler
from kqueue.worker.partitions import PartitionState, PartitionTable, PauseReason
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
    cancelled: int = 0
    duplicates: int = 0  # tasks with an idempotency key already claimed: settled without running

    def add(self, outcome: Settlement, n: int = 1) -> None:
        name = outcome.name.lower()
        setattr(self, name, getattr(self, name) + n)


@dataclass
class CommitBatch:
    offsets: dict[TP, int] = field(default_factory=dict)
    metadata: dict[TP, str] = field(default_factory=dict)  # completed offsets above each position
    moved: list[tuple[PartitionState, int, str]] = field(default_factory=list)
    released: list[tuple[PartitionState, int, list[OutRecord]]] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def records(self) -> list[OutRecord]:
        return [r for _, _, records in self.released for r in records]


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
        self.shrunk = 0  # refused records replaced by their dead letters by reference, over the run

    # -- tracking ----------------------------------------------------------------------------------
    def track(self, item: WorkItem) -> bool:
        """Claim `item` for its partition's current owner (in offset order); False if not ours."""
        state = self._table.get((item.topic, item.partition))
        if state is None:
            return False
        state.watermark.track(item.offset)
        item.owner = state
        return True

    @property
    def held_tasks(self) -> set[TP]:
        """Task partitions held back now (their records fetched meanwhile are not handed out)."""
        return self._table.held_tasks

    def hold_for_claims(self, item: WorkItem, retry_in: float, now_ms: int) -> None:
        """Fetch the item's partition again from the item in `retry_in` seconds (its claims could
        not be read); the item is not tracked, so nothing at or after it settles meanwhile."""
        state = self._table.get((item.topic, item.partition))
        if state is not None:
            self._table.hold(state, item.offset, now_ms + int(retry_in * 1000), PauseReason.CLAIMS_UNREAD)

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
                owner.completed_above.add(item.offset)
                settled += 1
        self.counts.completed += settled
        return settled

    def duplicate(self, item: WorkItem) -> None:
        """Settle a tracked `item` that must not run (its idempotency key is claimed): done, like a
        completion, but counted apart."""
        owner = item.owner
        if owner is not None and owner.live:
            owner.watermark.settle(item.offset)
            owner.completed_above.add(item.offset)
            self.counts.duplicates += 1

    @staticmethod
    def done_before(item: WorkItem) -> bool:
        """Settle a tracked `item` a previous owner had completed (from the commit metadata): True
        if it was one, and must not run again."""
        owner = item.owner
        if owner is None or not owner.done_before or item.offset not in owner.done_before:
            return False
        owner.done_before.discard(item.offset)
        owner.watermark.settle(item.offset)
        owner.completed_above.add(item.offset)  # still above the position: say so in the next commit too
        return True

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

    def prepare(self) -> CommitBatch | None:
        """What the next commit writes: records the positions have passed, and those positions.

        The records leave their partitions' holds; `finish` puts them back if the commit fails."""
        if self.failed is not None:
            return None
        self._last_commit = time.monotonic()
        batch = CommitBatch()
        for tp, state in self._table.states.items():
            position = state.watermark.position()
            if position is None:
                continue
            metadata = ""
            if state.completed_above:
                state.completed_above = {o for o in state.completed_above if o >= position}
                metadata = encode_completed(position, state.completed_above)
            # Committed again at the same position when more completed above it: cheap, and a crash
            # then re-runs less (a slow task holds the position while the rest of its partition runs).
            if position == state.committed and metadata == state.noted:
                continue
            batch.offsets[tp] = position
            if metadata:
                batch.metadata[tp] = metadata
            batch.moved.append((state, position, metadata))
            batch.released += [(state, offset, records) for offset, records in state.release_records(position)]
        return batch if batch.offsets else None

    def finish(self, batch: CommitBatch, error: BaseException | None) -> CommitResult:
        """Account for a commit of `batch` that succeeded (error None) or failed (re-raised here).

        BatchNotCommitted: the records go back to their holds (if the partition is still ours) and out
        with the next commit; those Kafka refused as too large go back as their fallbacks (dead letters
        by reference), and `shrunk` counts them. Any other error is fatal: `failed` is set and nothing
        is committed after."""
        if error is not None:
            if not isinstance(error, BatchNotCommitted):
                self.failed = error
                raise error
            index = 0
            for state, offset, records in batch.released:
                first, index = index, index + len(records)
                if not error.too_large.isdisjoint(range(first, index)):
                    records = self._shrunk(records, error.too_large, first)
                if state.live:
                    state.hold_records(offset, records)
            raise error
        for state, position, metadata in batch.moved:
            state.committed = position
            state.noted = metadata
        # A claim alone (a completed task's) counts nothing: the completion counted when it finished.
        kinds = Counter(records[0].kind for _, _, records in batch.released if records[0].kind in SETTLEMENT_OF_KIND)
        for kind, n in kinds.items():
            self.counts.add(SETTLEMENT_OF_KIND[kind], n)
        return CommitResult(batch.offsets, len(batch.records()), time.monotonic() - batch.started)

    def _shrunk(self, records: list[OutRecord], too_large: frozenset[int], first: int) -> list[OutRecord]:
        """`records` (positions first, first+1, ... of the batch) with the refused ones replaced."""
        out: list[OutRecord] = []
        for i, record in enumerate(records, first):
            if i in too_large and record.fallback is not None:
                out += record.fallback()
                self.shrunk += 1
                log.warning("a %s record for %s was too large for Kafka; dead-lettering it by reference",
                            record.kind.value, record.topic)
            else:
                out.append(record)
        return out

    def commit(self, group_metadata: Any) -> CommitResult | None:
        """Prepare, write and finish a commit on this thread (see `prepare` and `finish`)."""
        batch = self.prepare()
        if batch is None:
            return None
        try:
            self._settler.commit(batch.records(), batch.offsets, group_metadata, batch.metadata)
        except BaseException as exc:
            self.finish(batch, exc)
        return self.finish(batch, None)
