"""What is settled may be committed: commits of what the partition owners settled, and the counts.

A task is settled when it completed, or when its routing (retry, dead letter + status event, a tier
move) is decided. Routed records are held until the partition's commit position passes their
offset, and then written with that commit: a routed record is never durable while an earlier
offset of its partition is not, so a crash can never make a retry or a dead letter happen twice.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from kqueue.core.records import SETTLEMENT_OF_KIND, TP, OutRecord, Settlement
from kqueue.transport.settle import BatchNotCommitted, Settler
from kqueue.worker.partition_table import PartitionTable
from kqueue.worker.partitions import CommitSlice, PartitionOwner

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
    parked: int = 0  # tasks of an ordered key parked behind its retry (each runs later as a copy)

    def add(self, outcome: Settlement, n: int = 1) -> None:
        name = outcome.name.lower()
        setattr(self, name, getattr(self, name) + n)


# The most routed records one commit (one transaction) writes: a backlog of due tier records or of
# retries held while commits failed goes out over several commits, never in one huge transaction.
MAX_COMMIT_RECORDS = 2000
# Seconds between commits (`kqueue consume --commit-interval`). A SIGKILL re-runs what completed since
# the last commit that landed, so this bounds the re-runs. Kafka Streams commits exactly-once work
# every 100 ms, as here: a commit costs the poll thread about a millisecond (a no-op drain committing
# every 0.1 s ran at 0.99x of one committing every 1 s, paired runs; README has the chaos figures).
COMMIT_INTERVAL = 0.1
ISOLATE_FOR = 30.0  # seconds a partition whose record Kafka refuses is left out of commits before a retry


@dataclass
class CommitBatch:
    pieces: list[CommitSlice] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    @property
    def offsets(self) -> dict[TP, int]:
        return {p.owner.tp: p.position for p in self.pieces}

    @property
    def metadata(self) -> dict[TP, str]:
        """Completed offsets above each position, where there are any."""
        return {p.owner.tp: p.metadata for p in self.pieces if p.metadata}

    @property
    def released(self) -> list[tuple[PartitionOwner, int, list[OutRecord]]]:
        return [(p.owner, offset, records) for p in self.pieces for offset, records in p.released]

    def records(self) -> list[OutRecord]:
        return [r for p in self.pieces for _, records in p.released for r in records]


def commit_due(since_last: float, interval: float) -> bool:
    """Whether the next commit may start, `since_last` seconds after the last one was prepared. The
    caller starts it only once the last has landed (one in flight), so a commit slower than the
    interval is followed at once by the next."""
    return since_last >= interval


@dataclass(frozen=True)
class CommitResult:
    offsets: dict[TP, int]
    records: int
    seconds: float


class Checkpoint:
    """Commits what the partition owners have settled, and counts settlements."""

    def __init__(self, table: PartitionTable, settler: Settler, interval: float = COMMIT_INTERVAL,
                 max_records: int = MAX_COMMIT_RECORDS) -> None:
        self._table = table
        self._settler = settler
        self.interval = interval
        self.max_records = max_records
        self._last_commit = time.monotonic()
        self.counts = SettleCounts()
        # Set by a settlement error the settler cannot recover from: nothing is committed after it,
        # the worker stops and the tasks are redelivered.
        self.failed: BaseException | None = None
        self.shrunk = 0  # refused records replaced by their dead letters by reference, over the run
        self.isolated = 0  # partitions held because Kafka refused a record nothing could stand in for

    # -- committing --------------------------------------------------------------------------------
    def due(self) -> bool:
        return commit_due(time.monotonic() - self._last_commit, self.interval)

    def hurry(self) -> None:
        """Commit at the next turn, not after the interval: something waits for this commit to be
        read back (an ordered key's next parked task), one interval per step would add up."""
        self._last_commit = 0.0

    def prepare(self) -> CommitBatch | None:
        """What the next commit writes: each owner's position and the records it has passed, at most
        `max_records` records in all. The records leave their owners; `finish` puts them back if the
        commit fails."""
        if self.failed is not None:
            return None
        self._last_commit = time.monotonic()
        batch = CommitBatch()
        budget = self.max_records
        for owner in self._table.states.values():
            piece = owner.take_for_commit(max(1, budget))
            if piece is None:
                continue
            batch.pieces.append(piece)
            budget -= piece.record_count()
        return batch if batch.pieces else None

    def finish(self, batch: CommitBatch, error: BaseException | None) -> CommitResult:
        """Account for a commit of `batch` that succeeded (error None) or failed (re-raised here).

        BatchNotCommitted: the records go back to their owners (if still live) and out with the next
        commit; those Kafka refused go back as their fallbacks (dead letters by reference), and
        `shrunk` counts them; a partition with a refused record that has none (a dead letter by
        reference refused again, a status event) is isolated: held, its records kept, left out of
        commits for ISOLATE_FOR seconds, so the others go on. Any other error is fatal: `failed` is
        set and nothing is committed after."""
        if error is not None:
            if not isinstance(error, BatchNotCommitted):
                self.failed = error
                for piece in batch.pieces:
                    piece.owner.commit_failed(piece, [])
                raise error
            index = 0
            for piece in batch.pieces:
                back: list[tuple[int, list[OutRecord]]] = []
                stuck: str | None = None
                for offset, records in piece.released:
                    first, index = index, index + len(records)
                    hits = {i: why for i, why in error.refused.items() if first <= i < index}
                    if hits:
                        records, unreplaced = self._replaced(records, hits, first)
                        stuck = unreplaced or stuck
                    back.append((offset, records))
                piece.owner.commit_failed(piece, back)
                if stuck is not None:
                    self._isolate(piece.owner, stuck)
            raise error
        for piece in batch.pieces:
            piece.owner.commit_landed(piece)
        # A claim alone (a completed task's) counts nothing: the completion counted when it finished.
        kinds = Counter(records[0].kind for _, _, records in batch.released if records[0].kind in SETTLEMENT_OF_KIND)
        for kind, n in kinds.items():
            self.counts.add(SETTLEMENT_OF_KIND[kind], n)
        return CommitResult(batch.offsets, len(batch.records()), time.monotonic() - batch.started)

    def _replaced(self, records: list[OutRecord], refused: dict[int, str | None],
                  first: int) -> tuple[list[OutRecord], str | None]:
        """`records` (positions first, first+1, ... of the batch) with the refused ones replaced by their
        fallbacks (dead letters by reference), and why one was refused that has none (else None)."""
        out: list[OutRecord] = []
        unreplaced: str | None = None
        for i, record in enumerate(records, first):
            if i not in refused:
                out.append(record)
                continue
            why = refused[i]  # None: too large
            if record.fallback is not None:
                out += record.fallback(why)
                self.shrunk += 1
                log.warning("a %s record for %s was refused by Kafka (%s); dead-lettering it by reference",
                            record.kind.value, record.topic, why or "too large")
            else:
                out.append(record)
                unreplaced = f"a {record.kind.value} record for {record.topic} ({why or 'too large'})"
        return out, unreplaced

    def _isolate(self, owner: PartitionOwner, why: str) -> None:
        self.isolated += 1
        owner.isolate(ISOLATE_FOR)
        log.error("Kafka refuses %s, and nothing can stand in for it: partition %s/%d is held (its records "
                  "kept, nothing committed past them) while the others go on; trying it again every %.0f s",
                  why, owner.tp[0], owner.tp[1], ISOLATE_FOR)

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
