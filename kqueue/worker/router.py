"""The delay router inside every worker: holds each tier partition until its head is due.

Every record in a tier waits exactly the tier's delay after it was appended, so in a tier
partition records fall due in offset order: the head is always the next due. A head that is not
due pauses its partition and seeks back to it; the partition resumes when the head is due. Nothing
busy-waits, and one waiting partition holds up no other.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Iterable

from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Consumer, Message, TopicPartition

from kqueue.core import names
from kqueue.core.retry import Tiers, tier_due_at
from kqueue.worker.work import WorkItem

TP = tuple[str, int]


class DelayRouter:
    def __init__(self, consumer: Consumer, tiers: Tiers, prefix: str = "") -> None:
        self._consumer = consumer
        self._tiers = tiers
        self._prefix = prefix
        self._waiting: dict[TP, int] = {}  # paused tier partition -> when its head is due (epoch ms)
        self._wakeups: list[tuple[int, TP]] = []

    def is_tier_topic(self, topic: str) -> bool:
        return names.tier_of_topic(topic) is not None

    @property
    def waiting(self) -> dict[TP, int]:
        return dict(self._waiting)

    def due_items(self, messages: Iterable[Message], now_ms: int | None = None) -> list[WorkItem]:
        """The tier records (in offset order) that are due now; holds back each partition at its first
        record that is not."""
        now = now_ms if now_ms is not None else int(time.time() * 1000)
        due: list[WorkItem] = []
        for msg in messages:
            topic: str = msg.topic()  # type: ignore[assignment]
            partition: int = msg.partition()  # type: ignore[assignment]
            tp = (topic, partition)
            if tp in self._waiting:
                continue  # a record after the held-back head, fetched in the same batch
            tier = names.tier_of_topic(topic)
            assert tier is not None
            ts_type, appended = msg.timestamp()
            appended = appended if ts_type != TIMESTAMP_NOT_AVAILABLE else now
            due_at = tier_due_at(appended, self._tiers.seconds_of(tier)) if tier in self._tiers.names else now
            if due_at > now:
                self._hold(tp, msg.offset(), due_at)  # type: ignore[arg-type]
                continue
            raw = msg.headers()
            headers: dict[str, bytes | None] = dict(raw) if raw else {}  # type: ignore[arg-type]
            queue = names.queue_of_topic(topic, self._prefix)
            due.append(WorkItem(topic, partition, msg.offset(), msg.key(), msg.value(),  # type: ignore[arg-type]
                                headers, queue))
        return due

    def _hold(self, tp: TP, offset: int, due_at: int) -> None:
        partition = TopicPartition(tp[0], tp[1], offset)
        self._consumer.pause([partition])
        self._consumer.seek(partition)  # the head is fetched again when the partition resumes
        self._waiting[tp] = due_at
        heapq.heappush(self._wakeups, (due_at, tp))

    def resume_due(self, now_ms: int | None = None) -> int:
        """Resume tier partitions whose head is due; returns how many."""
        now = now_ms if now_ms is not None else int(time.time() * 1000)
        resumed = []
        while self._wakeups and self._wakeups[0][0] <= now:
            due_at, tp = heapq.heappop(self._wakeups)
            if self._waiting.get(tp) == due_at:
                del self._waiting[tp]
                resumed.append(TopicPartition(tp[0], tp[1]))
        if resumed:
            self._consumer.resume(resumed)
        return len(resumed)

    def forget(self, partitions: Iterable[TP]) -> None:
        """Revoked partitions: their new owner fetches the head again and decides afresh."""
        for tp in partitions:
            self._waiting.pop(tp, None)
