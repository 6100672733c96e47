"""Making a batch's routed records and its consumed offsets durable: in one transaction, or in order.

TransactionalSettler: retry/DLQ/moved records and the offsets commit atomically
(send_offsets_to_transaction with the consumer's group metadata), so a crash leaves all or none.
AtLeastOnceSettler: records are flushed first, then offsets are committed; a crash in between
re-runs the batch (a retry may then be written twice).
"""

from __future__ import annotations

import os
import uuid
from typing import Any, Protocol

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from kqueue.core.errors import KqueueError
from kqueue.transport.config import producer_config
from kqueue.transport.producer import POLL_EVERY, TaskProducer, produce_waiting

# Test-only fault injection: "before-commit" exits the process after the batch's records were
# produced inside the transaction and before it commits (see tests/chaos).
_FAULT = os.environ.get("KQUEUE_FAULT", "")


class SettlementError(KqueueError):
    """The batch could not be made durable; the worker must stop so its tasks are redelivered."""


class TransactionAborted(SettlementError):
    """The batch's transaction was aborted cleanly (e.g. the group's generation moved on during a
    rebalance): nothing of it is visible, and the worker can rewind to the committed offsets."""


class Settler(Protocol):
    transactional: bool

    def produce(self, topic: str, value: bytes | None, key: bytes | None, headers: list[tuple[str, bytes]],
                partition: int | None) -> None: ...

    def prepare(self) -> None: ...

    def commit(self, offsets: list[TopicPartition]) -> None: ...

    def close(self) -> None: ...


class AtLeastOnceSettler:
    transactional = False

    def __init__(self, consumer: Consumer, bootstrap: str) -> None:
        self._consumer = consumer
        self._producer = TaskProducer(bootstrap)

    def produce(self, topic: str, value: bytes | None, key: bytes | None, headers: list[tuple[str, bytes]],
                partition: int | None) -> None:
        self._producer.produce(topic, value, key, headers, partition=partition)

    def prepare(self) -> None:
        """Wait until every routed record is in Kafka (raises DeliveryError otherwise)."""
        if len(self._producer):
            self._producer.flush()

    def commit(self, offsets: list[TopicPartition]) -> None:
        if _FAULT == "before-commit" and offsets:
            os._exit(86)
        if offsets:
            self._consumer.commit(offsets=offsets, asynchronous=False)

    def close(self) -> None:
        self._producer.flush()


class TransactionalSettler:
    transactional = True

    def __init__(self, consumer: Consumer, bootstrap: str, group: str, timeout: float = 30.0) -> None:
        self._consumer = consumer
        self._timeout = timeout
        # With KIP-447 fencing by group metadata a unique id per worker incarnation is enough.
        config: dict[str, Any] = producer_config(bootstrap, **{
            "transactional.id": f"kqueue-{group}-{uuid.uuid4().hex[:12]}",
            # Short: a crashed worker's open transaction blocks read_committed readers of its
            # partitions until the coordinator aborts it at this timeout.
            "transaction.timeout.ms": 10000,
        })
        self._producer = Producer(config)
        self._producer.init_transactions(timeout)
        self._open = False
        self._routed = 0

    def _begin(self) -> None:
        if not self._open:
            self._producer.begin_transaction()
            self._open = True

    def produce(self, topic: str, value: bytes | None, key: bytes | None, headers: list[tuple[str, bytes]],
                partition: int | None) -> None:
        self._begin()
        kwargs: dict[str, Any] = {"value": value, "key": key, "headers": headers}
        if partition is not None:
            kwargs["partition"] = partition
        produce_waiting(self._producer, topic, kwargs)
        self._routed += 1
        if self._routed % POLL_EVERY == 0:
            self._producer.poll(0)

    def prepare(self) -> None:
        return None  # records become visible with the offsets, at commit

    def commit(self, offsets: list[TopicPartition]) -> None:
        if not offsets and not self._open:
            return
        try:
            self._begin()
            if offsets:
                self._producer.send_offsets_to_transaction(
                    offsets, self._consumer.consumer_group_metadata(), self._timeout
                )
            if _FAULT == "before-commit" and self._routed:
                self._producer.flush(self._timeout)  # the records reach the log, uncommitted
                os._exit(86)
            self._producer.commit_transaction(self._timeout)
        except KafkaException as exc:
            error = exc.args[0]
            abortable = hasattr(error, "txn_requires_abort") and error.txn_requires_abort()
            if abortable and self._abort():
                raise TransactionAborted(f"batch transaction aborted: {error}") from exc
            raise SettlementError(f"could not commit the batch transaction: {exc}") from exc
        finally:
            self._open = False
            self._routed = 0

    def _abort(self) -> bool:
        """Abort the open transaction; False if even that failed (the producer is unusable)."""
        try:
            self._producer.abort_transaction(self._timeout)
            return True
        except KafkaException:
            return False

    def close(self) -> None:
        if self._open:
            self._abort()
            self._open = False
