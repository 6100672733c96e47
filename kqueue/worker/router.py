"""The delay router inside every worker: holds each tier partition until its head is due.

Every record in a tier waits exactly the tier's delay after it was appended, so in a tier
partition records fall due in offset order: the head is always the next due. A head that is not
due holds its partition there (paused, and fetched again from the head when due). Nothing
busy-waits, and one waiting partition holds up no other. The holds live in the partition table.
"""

from __future__ import annotations

from collections.abc import Iterable

from kqueue.core import names
from kqueue.core.retry import Tiers, tier_due_at
from kqueue.transport.consumer import TIMESTAMP_NOT_AVAILABLE, Record
from kqueue.worker.partition_table import PartitionTable
from kqueue.worker.work import WorkItem


def is_tier_topic(topic: str) -> bool:
    return names.tier_of_topic(topic) is not None


class DelayRouter:
    def __init__(self, table: PartitionTable, tiers: Tiers, prefix: str = "") -> None:
        self._table = table
        self._tiers = tiers
        self._prefix = prefix

    def due_items(self, records: Iterable[Record], now_ms: int) -> list[WorkItem]:
        """The tier records (in offset order) that are due now; holds each partition at its first
        record that is not."""
        due: list[WorkItem] = []
        for msg in records:
            topic: str = msg.topic()  # type: ignore[assignment]
            partition: int = msg.partition()  # type: ignore[assignment]
            state = self._table.get((topic, partition))
            if state is None or state.cut is not None:
                continue  # not ours, or after a held-back head fetched in the same batch
            tier = names.tier_of_topic(topic)
            assert tier is not None
            ts_type, appended = msg.timestamp()
            appended = appended if ts_type != TIMESTAMP_NOT_AVAILABLE else now_ms
            due_at = tier_due_at(appended, self._tiers.seconds_of(tier)) if tier in self._tiers.names else now_ms
            offset: int = msg.offset()  # type: ignore[assignment]
            if due_at > now_ms:
                self._table.hold(state, offset, due_at)
                continue
            raw = msg.headers()
            headers: dict[str, bytes | None] = dict(raw) if raw else {}  # type: ignore[arg-type]
            queue = names.queue_of_topic(topic, self._prefix)
            due.append(WorkItem(topic, partition, offset, msg.key(), msg.value(), headers, queue))
        return due
