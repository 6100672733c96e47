"""What is settled and may be committed: per-partition watermarks, dead letters, commits.

One object owns "settled": a partition's offset is committed only when every task at or below it
completed or its dead letter was acknowledged by Kafka (at-least-once mode).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from confluent_kafka import Consumer, KafkaException, TopicPartition

from kqueue.core import names
from kqueue.core.headers import dead_letter_headers
from kqueue.core.watermark import PartitionWatermark
from kqueue.transport.producer import TaskProducer
from kqueue.worker.work import Outcome, WorkItem

log = logging.getLogger("kqueue.worker")
TP = tuple[str, int]


class Checkpoint:
    def __init__(self, consumer: Consumer, producer: TaskProducer, topic_prefix: str = "",
                 interval: float = 0.5) -> None:
        self._consumer = consumer
        self._producer = producer
        self._prefix = topic_prefix
        self.interval = interval
        self.watermarks: dict[TP, PartitionWatermark] = {}
        self._committed: dict[TP, int] = {}
        self._awaiting_delivery: list[WorkItem] = []
        self._last_commit = time.monotonic()
        self.completed = 0
        self.dead_lettered = 0

    # -- ownership ---------------------------------------------------------------------------------
    def assign(self, partitions: Iterable[TP]) -> None:
        for tp in partitions:
            self.watermarks[tp] = PartitionWatermark()

    def revoke(self, partitions: Iterable[TP]) -> None:
        """Forget partitions we no longer own; late outcomes for them will be ignored."""
        for tp in partitions:
            self.watermarks.pop(tp, None)
            self._committed.pop(tp, None)

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
    def settle(self, outcomes: Iterable[Outcome]) -> None:
        for item, failure in outcomes:
            if not self.owns(item):
                continue
            if failure is None:
                assert item.watermark is not None
                item.watermark.settle(item.offset)
                self.completed += 1
                continue
            headers = dead_letter_headers(
                item.headers, item.task_id, item.origin, failure.error_type, failure.message, failure.trace
            )
            self._producer.produce(names.dlq_topic(item.queue, self._prefix), item.value, item.key, headers,
                                   partition=item.partition)
            self._awaiting_delivery.append(item)

    def due(self) -> bool:
        return time.monotonic() - self._last_commit >= self.interval

    def commit(self) -> int:
        """Wait for dead letters, then commit every partition's settled position. Returns partitions committed."""
        self._last_commit = time.monotonic()
        if self._awaiting_delivery:
            self._producer.flush()  # raises on refusal: we stop before committing past a lost dead letter
            for item in self._awaiting_delivery:
                if self.owns(item):
                    assert item.watermark is not None
                    item.watermark.settle(item.offset)
                    self.dead_lettered += 1
            self._awaiting_delivery = []
        offsets = []
        for tp, watermark in self.watermarks.items():
            position = watermark.position()
            if position is not None and position != self._committed.get(tp):
                offsets.append(TopicPartition(tp[0], tp[1], position))
        if not offsets:
            return 0
        try:
            self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            # e.g. a rebalance in progress: these offsets are committed next time if still ours,
            # and redelivered to the new owner otherwise (never lost).
            log.warning("offset commit failed, will retry: %s", exc)
            return 0
        for tp_obj in offsets:
            self._committed[(tp_obj.topic, tp_obj.partition)] = tp_obj.offset
        return len(offsets)

    def outstanding(self) -> int:
        return sum(w.outstanding for w in self.watermarks.values())
