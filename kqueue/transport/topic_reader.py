"""Reading kqueue's own topics outside any consumer group: to their end, or on and on.

Claims (`Q.dedup`), cancels (`_kqueue.control`) and the status view read whole topics with
read_committed and no group: partitions are assigned, never joined, and the client reports each
partition's end (partition EOF, which also steps past a trailing transaction marker). This is the
one place that does it.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from kqueue.core.errors import KqueueError
from kqueue.core.records import TP
from kqueue.transport.config import client_config
from kqueue.transport.consumer import Record


class TopicReadError(KqueueError):
    """A topic could not be read (Kafka away, no progress for too long)."""


class TopicReader:
    """A group-less, read_committed consumer over assigned partitions that says when each ends."""

    def __init__(self, bootstrap: str, purpose: str, **overrides: Any) -> None:
        self._consumer = Consumer({
            **client_config(bootstrap),
            "group.id": f"_kqueue.{purpose}.{uuid.uuid4().hex[:8]}",  # never joins: partitions are assigned
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
            **overrides,
        })

    def partitions(self, topic: str, timeout: float = 10.0) -> list[int]:
        """The topic's partitions (empty when it does not exist)."""
        try:
            meta = self._consumer.list_topics(topic, timeout=timeout)
        except KafkaException as exc:
            raise TopicReadError(f"cannot list the partitions of {topic}: {exc}") from exc
        found = meta.topics.get(topic)
        if found is None or found.error is not None:
            return []
        return sorted(found.partitions)

    def is_empty(self, tp: TP, timeout: float = 10.0) -> bool:
        try:
            low, high = self._consumer.get_watermark_offsets(TopicPartition(tp[0], tp[1]), timeout=timeout)
        except KafkaException as exc:
            raise TopicReadError(f"cannot read the offsets of {tp[0]}/{tp[1]}: {exc}") from exc
        return bool(high <= low)

    def assign(self, starts: dict[TP, int | None]) -> None:
        """Read these partitions from the given offsets (None: from the beginning)."""
        self._consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING if o is None else o)
                               for (t, p), o in starts.items()])

    def add(self, starts: dict[TP, int | None]) -> None:
        """Read these partitions too (incrementally)."""
        self._consumer.incremental_assign([TopicPartition(t, p, OFFSET_BEGINNING if o is None else o)
                                           for (t, p), o in starts.items()])

    def poll(self, max_records: int, timeout: float) -> tuple[list[Record], list[tuple[TP, int]]]:
        """Records read, and the partitions that reached their end (with the end offset)."""
        records: list[Record] = []
        ends: list[tuple[TP, int]] = []
        for msg in self._consumer.consume(max_records, timeout=timeout):
            error = msg.error()
            if error is None:
                records.append(msg)
            elif error.code() == KafkaError._PARTITION_EOF:
                ends.append(((msg.topic() or "", msg.partition() or 0), msg.offset() or 0))
        return records, ends

    def topic_partitions(self, topics: Iterable[str], timeout: float = 10.0) -> list[TP]:
        """The partitions of those `topics` that exist (TopicReadError when Kafka does not answer)."""
        try:
            meta = self._consumer.list_topics(timeout=timeout)
        except KafkaException as exc:
            raise TopicReadError(f"cannot list topics: {exc}") from exc
        return [(t, p) for t in topics if t in meta.topics for p in sorted(meta.topics[t].partitions)]

    def positions(self, partitions: Iterable[TP]) -> dict[TP, int]:
        """How far reading has got in each partition (past trailing transaction markers too)."""
        return {(tp.topic, tp.partition): tp.offset
                for tp in self._consumer.position([TopicPartition(t, p) for t, p in partitions]) if tp.offset >= 0}

    def close(self) -> None:
        self._consumer.close()


def read_to_end(bootstrap: str, partitions: Iterable[TP], purpose: str, stalled_after: float = 10.0,
                stop: threading.Event | None = None) -> Iterator[Record]:
    """Every committed record of `partitions` from the beginning, until each reached the end it had
    while being read. Raises TopicReadError when nothing arrives for `stalled_after` seconds: a long
    topic takes as long as it takes, a stuck one fails."""
    reader = TopicReader(bootstrap, purpose)
    try:
        remaining = {tp for tp in partitions if not reader.is_empty(tp)}
        if not remaining:
            return
        reader.assign(dict.fromkeys(remaining))
        last_progress = time.monotonic()
        while remaining and not (stop is not None and stop.is_set()):
            records, ends = reader.poll(1000, 0.2)
            if records or ends:
                last_progress = time.monotonic()
            elif time.monotonic() - last_progress > stalled_after:
                names = ", ".join(f"{t}/{p}" for t, p in sorted(remaining))
                raise TopicReadError(f"no progress reading {names} for {stalled_after:.0f}s")
            yield from records
            for tp, _ in ends:
                remaining.discard(tp)
    finally:
        reader.close()


def read_record(bootstrap: str, tp: TP, offset: int, stalled_after: float = 10.0) -> Record | None:
    """The committed record at `offset` of `tp`, or None when it is no longer there (retention or
    compaction removed it: reading then starts at a later offset). Raises TopicReadError when
    nothing arrives for `stalled_after` seconds."""
    reader = TopicReader(bootstrap, "parked")
    try:
        reader.assign({tp: offset})
        last_progress = time.monotonic()
        while True:
            records, ends = reader.poll(1, 0.2)
            for msg in records:
                return msg if msg.offset() == offset else None
            if ends:
                return None  # nothing at or after it: gone, or past a transaction's end
            if time.monotonic() - last_progress > stalled_after:
                raise TopicReadError(f"no progress reading {tp[0]}/{tp[1]} at {offset} for {stalled_after:.0f}s")
    finally:
        reader.close()
