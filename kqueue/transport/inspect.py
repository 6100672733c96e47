"""Read-only views of topics and groups: sizes and consumer lag."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from confluent_kafka import Consumer, TopicPartition


@dataclass(frozen=True)
class PartitionDepth:
    topic: str
    partition: int
    low: int
    high: int
    committed: int | None  # the group's committed offset, if a group was asked about

    @property
    def records(self) -> int:
        return self.high - self.low

    @property
    def lag(self) -> int:
        start = self.committed if self.committed is not None and self.committed >= 0 else self.low
        return max(0, self.high - start)


def topic_depths(bootstrap: str, topics: list[str], group: str | None = None,
                 timeout: float = 10.0) -> list[PartitionDepth]:
    """Low/high watermarks of every partition of `topics` (missing topics are skipped)."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group or f"_kqueue.inspect.{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False,
        "isolation.level": "read_committed",
    })
    try:
        meta = consumer.list_topics(timeout=timeout)
        tps = [TopicPartition(t, p) for t in topics if t in meta.topics for p in sorted(meta.topics[t].partitions)]
        committed: dict[tuple[str, int], int] = {}
        if group is not None and tps:
            for tp in consumer.committed(tps, timeout=timeout):
                committed[(tp.topic, tp.partition)] = tp.offset
        out = []
        for tp in tps:
            low, high = consumer.get_watermark_offsets(tp, timeout=timeout, cached=False)
            out.append(PartitionDepth(tp.topic, tp.partition, low, high, committed.get((tp.topic, tp.partition))))
        return out
    finally:
        consumer.close()


def read_headers(bootstrap: str, topics: list[str], timeout: float = 10.0) -> list[dict[str, str]]:
    """The headers of every committed record in `topics` (small topics: demos, tests, DLQ views)."""
    from kqueue.core.headers import header_map

    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"_kqueue.inspect.{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False,
        "isolation.level": "read_committed",
    })
    try:
        depths = [d for d in topic_depths(bootstrap, topics, timeout=timeout) if d.records > 0]
        if not depths:
            return []
        consumer.assign([TopicPartition(d.topic, d.partition, d.low) for d in depths])
        remaining = {(d.topic, d.partition): d.high for d in depths}
        out: list[dict[str, str]] = []
        deadline = time.monotonic() + timeout
        while remaining and time.monotonic() < deadline:
            for msg in consumer.consume(500, timeout=0.2):
                if msg.error() is not None:
                    continue
                out.append(header_map(msg.headers()))
                tp = (msg.topic(), msg.partition())
                if tp in remaining and (msg.offset() or 0) + 1 >= remaining[tp]:
                    del remaining[tp]
        return out
    finally:
        consumer.close()
