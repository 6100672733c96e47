"""What is settled and may be committed: per-partition watermarks, routed records, commits.

One object owns "settled". A task is settled when it completed, or when the record that routes it
on (retry tier, DLQ, delivery to its target) is durable with the offsets: in the same transaction
(transactional settler), or flushed before the offsets are committed (at-least-once settler).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass

from confluent_kafka import KafkaException, TopicPartition

from kqueue.core.watermark import PartitionWatermark
from kqueue.transport.settle import Settler, TransactionAborted
from kqueue.worker.routing import OutRecord
from kqueue.worker.work import WorkItem

log = logging.getLogger("kqueue.worker")
TP = tuple[str, int]


@dataclass
class SettleCounts:
    completed: int = 0
    retried: int = 0
    dead_lettered: int = 0
    delivered: int = 0  # due tier records moved to their target
    re_tiered: int = 0


class Checkpoint:
    def __init__(self, settler: Settler, interval: float = 0.5) -> None:
        self._settler = settler
        self.interval = interval
        self.watermarks: dict[TP, PartitionWatermark] = {}
        self._committed: dict[TP, int] = {}
        self._awaiting_delivery: list[tuple[WorkItem, str]] = []
        self._last_commit = time.monotonic()
        self.counts = SettleCounts()
        # Set by the first settlement error. Some offsets may already count as settled on the
        # strength of records that never became durable, so from then on nothing is committed:
        # the worker stops and the tasks are redelivered.
        self.failed: BaseException | None = None

    # -- ownership ---------------------------------------------------------------------------------
    def assign(self, partitions: Iterable[TP]) -> None:
        for tp in partitions:
            self.watermarks[tp] = PartitionWatermark()

    def revoke(self, partitions: Iterable[TP]) -> None:
        """Forget partitions we no longer own; late outcomes for them will be ignored."""
        for tp in partitions:
            self.watermarks.pop(tp, None)
            self._committed.pop(tp, None)

    def restart(self, committed: dict[TP, int]) -> None:
        """Partitions rewound to their committed offsets: fresh watermarks (late outcomes of the
        abandoned work are ignored), and the committed positions remembered so that committing
        them again does not count as progress."""
        for tp, offset in committed.items():
            self.watermarks[tp] = PartitionWatermark()
            self._committed[tp] = offset

    def owns(self, item: WorkItem) -> bool:
        # Identity, not equality: a partition revoked and assigned again gets a new watermark,
        # so an outcome from the old ownership cannot settle the new one.
        return item.watermark is not None and self.watermarks.get((item.topic, item.partition)) is item.watermark

    def track(self, item: WorkItem) -> bool:
        watermark = self.watermarks.get((item.topic, item.partition))
        if watermark is None:
            return False
        watermark.track(item.offset)
        item.watermark = watermark
        return True

    # -- settlement --------------------------------------------------------------------------------
    def completed(self, items: Iterable[WorkItem]) -> None:
        for item in items:
            if self.owns(item):
                assert item.watermark is not None
                item.watermark.settle(item.offset)
                self.counts.completed += 1

    def route(self, item: WorkItem, records: list[OutRecord]) -> None:
        """Settle `item` by producing `records` (a retry, a dead letter and its status event, a tier move)."""
        if not self.owns(item):
            return
        try:
            for record in records:
                self._settler.produce(record.topic, record.value, record.key, record.headers, record.partition)
        except BaseException as exc:
            self.failed = exc
            raise
        kind = records[0].kind
        if self._settler.transactional:
            self._settled(item, kind)  # atomic with the offsets at commit
        else:
            self._awaiting_delivery.append((item, kind))

    def _settled(self, item: WorkItem, kind: str) -> None:
        assert item.watermark is not None
        item.watermark.settle(item.offset)
        counts = self.counts
        if kind == "retry":
            counts.retried += 1
        elif kind == "dead-letter":
            counts.dead_lettered += 1
        elif kind == "deliver":
            counts.delivered += 1
        else:
            counts.re_tiered += 1

    def due(self) -> bool:
        return time.monotonic() - self._last_commit >= self.interval

    def commit(self) -> int:
        """Make routed records durable, then commit every partition's settled position."""
        if self.failed is not None:
            return 0
        try:
            return self._commit()
        except TransactionAborted:
            raise  # clean abort: the worker rewinds its partitions to the committed offsets
        except BaseException as exc:
            self.failed = exc
            raise

    def _commit(self) -> int:
        self._last_commit = time.monotonic()
        self._settler.prepare()
        for item, kind in self._awaiting_delivery:
            if self.owns(item):
                self._settled(item, kind)
        self._awaiting_delivery = []
        offsets = []
        for tp, watermark in self.watermarks.items():
            position = watermark.position()
            if position is not None and position != self._committed.get(tp):
                offsets.append(TopicPartition(tp[0], tp[1], position))
        try:
            self._settler.commit(offsets)
        except KafkaException as exc:
            if self._settler.transactional:
                raise
            # e.g. a rebalance in progress: committed next time if still ours, redelivered otherwise.
            log.warning("offset commit failed, will retry: %s", exc)
            return 0
        for tp_obj in offsets:
            self._committed[(tp_obj.topic, tp_obj.partition)] = tp_obj.offset
        return len(offsets)

    def outstanding(self) -> int:
        return sum(w.outstanding for w in self.watermarks.values())
