"""The cron scheduler's Kafka edge: who leads, the leader's transactions, everyone's beats.

Leadership is a consumer group over the one-partition cron topic: the member assigned partition 0
leads. The group uses the classic protocol with cooperative-sticky assignment, so a member that
joins never takes partition 0 from a live leader, and with a client-side `session.timeout.ms`, so
a dead leader is replaced in about that time whatever the broker's KIP-848 session setting is.

The leader writes through one transactional.id per app: initialising it fences any earlier
leader still alive (a zombie that has not heard it lost the partition), and completes or aborts
that leader's open transaction before the new one reads the topic.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition

from kqueue.core.errors import KqueueError
from kqueue.core.headers import HeaderList
from kqueue.transport.config import consumer_config, producer_config
from kqueue.transport.txn import FENCED_CODES, error_of

log = logging.getLogger("kqueue.cron")

SESSION_TIMEOUT_MS = 6000  # the smallest session a default broker allows (group.min.session.timeout.ms)
TXN_TIMEOUT_MS = 10_000  # a dead leader's open transaction holds read_committed readers at most this long

Outgoing = tuple[str, bytes | None, bytes | None, HeaderList]  # topic, key, value, headers


class CronWriteError(KqueueError):
    """The leader's transaction did not commit (or its outcome is unknown): read the topic again."""


class CronFenced(CronWriteError):
    """A newer leader initialised the transactional.id: this one no longer leads."""


class Leadership:
    """A member of the scheduler group; `leading` while it holds partition 0 of the cron topic."""

    def __init__(self, bootstrap: str, group: str, topic: str) -> None:
        self.topic = topic
        self.leading = False
        self.term = 0  # bumped each time partition 0 is gained: a new term reads the topic afresh
        self._consumer = Consumer(consumer_config(
            bootstrap, group, protocol="classic", **{
                "session.timeout.ms": SESSION_TIMEOUT_MS, "heartbeat.interval.ms": 1000,
                "enable.partition.eof": True, "client.id": f"kqueue-cron-{group}"}))
        self._consumer.subscribe([topic], on_assign=self._on_assign, on_revoke=self._on_revoke,
                                 on_lost=self._on_lost)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            tp.offset = OFFSET_BEGINNING  # the whole (compacted) topic: progress and beats
        if partitions:
            consumer.incremental_assign(partitions)
        if any(tp.partition == 0 for tp in partitions):
            self.leading = True
            self.term += 1

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if any(tp.partition == 0 for tp in partitions):
            self.leading = False

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._on_revoke(consumer, partitions)

    def poll(self, timeout: float) -> list[tuple[bytes | None, bytes | None]]:
        """(key, value) of the records read (also serves the group's rebalances)."""
        out: list[tuple[bytes | None, bytes | None]] = []
        for msg in self._consumer.consume(500, timeout=timeout):
            error = msg.error()
            if error is None:
                out.append((msg.key(), msg.value()))
            elif error.code() != KafkaError._PARTITION_EOF:
                log.debug("cron topic: %s", error.str())
        return out

    def end_offsets(self, timeout: float = 10.0) -> tuple[int, int]:
        """(start, end) of partition 0 now (take them after the transactional id is initialised)."""
        try:
            low, high = self._consumer.get_watermark_offsets(TopicPartition(self.topic, 0), timeout=timeout,
                                                             cached=False)
        except KafkaException as exc:
            raise CronWriteError(f"cannot read the end of {self.topic}: {error_of(exc).str()}") from None
        return int(low), int(high)

    def position(self) -> int:
        """How far partition 0 has been read (past trailing transaction markers too); -1 if not yet."""
        [tp] = self._consumer.position([TopicPartition(self.topic, 0)])
        return int(tp.offset)

    def close(self) -> None:
        self._consumer.close()  # leaves the group: a standby takes over at once, not after the session


class TickWriter:
    """The leader's transactional producer for one term (init_transactions fences earlier leaders)."""

    def __init__(self, bootstrap: str, transactional_id: str, timeout: float = 30.0) -> None:
        self._timeout = timeout
        self._producer = Producer(producer_config(bootstrap, **{
            "transactional.id": transactional_id, "transaction.timeout.ms": TXN_TIMEOUT_MS}))
        try:
            self._producer.init_transactions(timeout)
        except KafkaException as exc:
            raise CronWriteError(f"cannot take the cron transactional id: {error_of(exc).str()}") from None

    def commit(self, records: Sequence[Outgoing]) -> None:
        """Write `records` in one transaction: all of them become visible, or none."""
        producer = self._producer
        try:
            producer.begin_transaction()
            for topic, key, value, headers in records:
                wire: list[tuple[str, str | bytes | None]] = list(headers)
                producer.produce(topic, value=value, key=key, headers=wire)
            producer.commit_transaction(self._timeout)
        except (KafkaException, BufferError) as exc:
            error = error_of(exc) if isinstance(exc, KafkaException) else KafkaError(KafkaError._QUEUE_FULL)
            if error.code() in FENCED_CODES:
                raise CronFenced(error.str()) from None
            self._abort()
            raise CronWriteError(error.str()) from None

    def _abort(self) -> None:
        try:  # don't hold read_committed readers until the transaction times out
            self._producer.abort_transaction(self._timeout)
        except KafkaException as exc:
            log.debug("cron: abort failed: %s", error_of(exc).str())

    def close(self) -> None:
        self._producer.flush(1.0)


class BeatWriter:
    """A plain idempotent producer for a scheduler's beats (any member writes them, leader or not)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._topic = topic
        self._producer = Producer(producer_config(bootstrap))
        self.failures = 0

    def _on_delivery(self, err: KafkaError | None, _msg: Any) -> None:
        if err is not None:
            self.failures += 1
            log.debug("cron beat not delivered: %s", err.str())

    def send(self, key: bytes, value: bytes | None) -> None:
        try:
            self._producer.produce(self._topic, value=value, key=key, on_delivery=self._on_delivery)
        except (BufferError, KafkaException) as exc:  # Kafka away: the next beat tries again
            log.debug("cron beat not queued: %s", exc)
        self._producer.poll(0)

    def flush(self, timeout: float) -> bool:
        """True when every beat reached Kafka within `timeout`."""
        return int(self._producer.flush(timeout)) == 0
