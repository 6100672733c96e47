"""Making a batch durable: its routed records and its consumed offsets, in one transaction or in order.

The worker holds each routed record (retry, dead letter, status event, tier move) until its
partition's commit position has passed it, then hands records and offsets over together:
TransactionalSettler writes both in one short transaction (begin, produce, send offsets, commit), so
a crash leaves all or none, and no transaction stays open between commits. AtLeastOnceSettler
flushes the records, then commits the offsets; a crash in between writes the records twice.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
import uuid
from typing import Any, NoReturn, Protocol

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaError, KafkaException, Producer, TopicPartition

from kqueue.core.errors import DeliveryError, KqueueError, RecordTooLarge
from kqueue.core.records import TP, OutRecord
from kqueue.transport import faults
from kqueue.transport.admin import make_admin
from kqueue.transport.config import producer_config
from kqueue.transport.consumer import ConsumerEdge, offset_with_note
from kqueue.transport.producer import POLL_EVERY, TOO_LARGE_CODES, TaskProducer, produce_waiting
from kqueue.transport.txn import FENCED_CODES, TxnAction, classify, commit_outcome, error_of, is_permanent, retrying

log = logging.getLogger("kqueue.worker")



class SettlementError(KqueueError):
    """The batch could not be made durable and the settler cannot go on: the worker must stop."""


class BatchNotCommitted(SettlementError):
    """The batch was not committed and nothing of it is visible (its transaction was aborted), or,
    at least once, its records may be: the worker keeps the batch and commits it again later.
    `permanent`: Kafka refused the batch's own records, so trying again will not help.
    `refused`: the positions (in the records given) of the records Kafka refused one by one, with
    why (None: too large; else invalid for their topic, not allowed, ...)."""

    def __init__(self, message: str, permanent: bool = False, too_large: frozenset[int] = frozenset(),
                 refused: dict[int, str | None] | None = None) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.refused: dict[int, str | None] = {**dict.fromkeys(too_large), **(refused or {})}

    @property
    def too_large(self) -> frozenset[int]:
        """Positions of every record refused (by size or otherwise)."""
        return frozenset(self.refused)


class Settler(Protocol):
    transactional: bool

    def commit(self, records: list[OutRecord], offsets: dict[TP, int], group_metadata: Any,
               metadata: dict[TP, str] | None = None) -> None:
        """Make `records` and `offsets` durable together; raises BatchNotCommitted or SettlementError.

        `group_metadata` is the consumer's, taken on the polling thread (the client blocks a call for
        it from another thread while that one polls). `metadata`: per partition, the commit's
        metadata string (completed offsets above the position)."""
        ...

    def abandon(self) -> bool:
        """Give up a commit stuck inside the client before its commit was sent (the batch is kept and
        a fresh client carries it); False if it cannot be given up safely."""
        ...

    def close(self) -> None: ...


# Errors about one record, not the batch or the connection: that record will be refused again.
_RECORD_REFUSALS = frozenset({
    KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.INVALID_MSG_SIZE, KafkaError.INVALID_RECORD, KafkaError.INVALID_MSG,
    KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.TOPIC_EXCEPTION, KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError._UNKNOWN_TOPIC, KafkaError._UNKNOWN_PARTITION,
})


def _why(error: KafkaError) -> str | None:
    return None if error.code() in TOO_LARGE_CODES else f"{error.name()}: {error.str()}"


def _note_refused(refused: dict[int, str | None], index: int, err: KafkaError | None, _msg: object = None) -> None:
    """Delivery callback: remember which records the broker refused, and why (None: too large)."""
    if err is not None and err.code() in _RECORD_REFUSALS:
        refused[index] = _why(err)


class AtLeastOnceSettler:
    transactional = False

    def __init__(self, consumer: ConsumerEdge, bootstrap: str) -> None:
        self._consumer = consumer
        self._producer = TaskProducer(bootstrap)

    def commit(self, records: list[OutRecord], offsets: dict[TP, int], group_metadata: Any,
               metadata: dict[TP, str] | None = None) -> None:
        refused: dict[int, str | None] = {}
        try:
            for i, r in enumerate(records):
                try:
                    self._producer.produce(r.topic, r.value, r.key, r.headers, partition=r.partition,
                                           on_error=functools.partial(_note_refused, refused, i))
                except RecordTooLarge:  # refused before it was queued (over the producer's limit)
                    refused[i] = None
            if records:
                self._producer.flush()
        except (DeliveryError, RecordTooLarge, KafkaException) as exc:
            raise BatchNotCommitted(f"routed records were not delivered: {exc}", permanent=True,
                                    refused=refused) from exc
        if refused:
            raise BatchNotCommitted(f"{len(refused)} routed record(s) refused by Kafka", permanent=True,
                                    refused=refused)
        faults.crash_before_commit(len(records))
        if offsets:
            try:
                self._consumer.commit(offsets, metadata)
            except KafkaException as exc:  # e.g. a rebalance in progress: committed next time if still ours
                raise BatchNotCommitted(f"offset commit failed: {error_of(exc)}") from exc

    def abandon(self) -> bool:
        return False  # records may be half written: wait for the flush instead

    def close(self) -> None:
        self._producer.flush()


# A crashed worker's open transaction blocks read_committed readers of its partitions until the
# coordinator aborts it at this timeout, so it is short. Ours stay open for one commit only, and
# never longer than TXN_BUDGET: past the timeout the coordinator would abort it and fence the
# producer for good.
TXN_TIMEOUT_MS = 10_000
TXN_BUDGET = 6.0  # for everything before the commit is sent
COMMIT_STEP = 5.0
COMMIT_BUDGET = 45.0  # retrying a sent commit (below the committer's 60 s stuck watchdog)


def worker_transactional_id(group: str, instance_id: str | None) -> str:
    """A worker's transactional.id. KIP-447 fences zombies by group metadata, so any unique id is
    safe; one kept across restarts (from `--instance-id`) also lets the restarted worker end its
    predecessor's open transaction when it starts (a SIGKILL leaves one open), where a new id
    left it to the coordinator's timeout, holding the partitions' committed offsets unreadable."""
    return f"kqueue-{group}-{instance_id}" if instance_id else f"kqueue-{group}-{uuid.uuid4().hex[:12]}"


class TransactionalSettler:
    transactional = True

    def __init__(self, bootstrap: str, group: str, timeout: float = 30.0, instance_id: str | None = None) -> None:
        self._timeout = timeout
        self._bootstrap, self._group = bootstrap, group
        config: dict[str, Any] = producer_config(bootstrap, **{
            "transactional.id": worker_transactional_id(group, instance_id),
            "transaction.timeout.ms": TXN_TIMEOUT_MS,
        })
        self._config = config
        self._producer: Producer | None = Producer(config)
        self._producer.init_transactions(timeout)
        # A producer given up while stuck (`abandon`) belongs to an older generation: its thread
        # must never touch the settler's state again. Its successor shares the transactional.id, so
        # initialising it fences the stuck one, which can then never commit.
        self._lock = threading.Lock()
        self._generation = 0
        self._sending_commit = False

    def _ready_producer(self, timeout: float) -> Producer:
        """The transactional producer, a fresh one if the last became unusable."""
        if self._producer is None:
            producer = Producer(self._config)
            try:
                producer.init_transactions(timeout)
            except KafkaException as exc:
                raise BatchNotCommitted(f"no transactional producer yet: {error_of(exc)}") from exc
            self._producer = producer
        return self._producer

    def commit(self, records: list[OutRecord], offsets: dict[TP, int], group_metadata: Any,
               metadata: dict[TP, str] | None = None) -> None:
        if not records and not offsets:
            return
        if faults.refuse_commit(len(records)):
            raise BatchNotCommitted("injected: the commit was refused (KQUEUE_FAULT)")
        deadline = time.monotonic() + TXN_BUDGET

        def left() -> float:
            return max(0.1, deadline - time.monotonic())

        generation = self._generation
        producer = self._ready_producer(left())
        refused: dict[int, str | None] = {}  # records Kafka refused, by position in `records`: why
        try:
            producer.begin_transaction()
            for i, r in enumerate(records):
                kwargs: dict[str, Any] = {"value": r.value, "key": r.key, "headers": r.headers,
                                          "on_delivery": functools.partial(_note_refused, refused, i)}
                if r.partition is not None:
                    kwargs["partition"] = r.partition
                try:
                    produce_waiting(producer, r.topic, kwargs)
                except KafkaException as exc:  # refused before it was queued (librdkafka's own checks)
                    if error_of(exc).code() not in _RECORD_REFUSALS:
                        raise
                    refused[i] = _why(error_of(exc))
                if (i + 1) % POLL_EVERY == 0:
                    producer.poll(0)
            if refused:
                raise KafkaException(KafkaError(KafkaError.INVALID_RECORD,
                                                f"{len(refused)} routed record(s) refused by Kafka"))
            if offsets:
                notes = metadata or {}
                tps = [offset_with_note(t, p, o, notes) for (t, p), o in offsets.items()]
                retrying(lambda: producer.send_offsets_to_transaction(tps, group_metadata, left()), left())
            if faults.abort_this_transaction(len(records)):
                raise KafkaException(KafkaError(KafkaError._STATE, "injected abort", txn_requires_abort=True))
            if faults.wants_records_on_log(len(records)):
                producer.flush(left())  # the records reach the log, uncommitted
            faults.crash_before_commit(len(records))
        except KafkaException as exc:
            self._give_up(exc, refused, producer, generation)
        with self._lock:
            if generation != self._generation:
                raise BatchNotCommitted("this commit was abandoned while stuck; a fresh producer carries the batch")
            self._sending_commit = True
        # Once the commit is sent the coordinator may already be completing it, and an abort would
        # be refused (INVALID_TXN_STATE, fatal). So a retriable failure is retried (librdkafka resumes
        # the same commit) for up to COMMIT_BUDGET; past that its outcome is unknown, which is fatal.
        try:
            retrying(lambda: producer.commit_transaction(COMMIT_STEP), COMMIT_BUDGET)
        except KafkaException as exc:
            error = error_of(exc)
            if error.txn_requires_abort() and not error.fatal():
                producer.poll(0)  # serve the delivery reports that say which records were refused
                self._give_up(exc, refused, producer, generation)  # nothing of the batch became visible
            if error.code() in FENCED_CODES and self._after_fenced_commit(offsets, metadata or {}, generation):
                return
            raise SettlementError(f"the batch transaction's commit did not complete: {error}") from exc
        finally:
            with self._lock:
                self._sending_commit = False

    def _after_fenced_commit(self, offsets: dict[TP, int], notes: dict[TP, str], generation: int) -> bool:
        """Fenced while ending the transaction: ask the group whether the batch's offsets landed
        (waiting out pending transactional offsets). True: it committed; BatchNotCommitted: it was
        aborted, a fresh producer carries it; False: unknown (the caller fails)."""
        ours = {tp: (offset, notes.get(tp, "")) for tp, offset in offsets.items()}
        try:
            committed = self._committed(list(ours))
        except Exception as exc:
            log.error("fenced on commit, and the group's offsets could not be read: %s", exc)
            return False
        outcome = commit_outcome(ours, committed)
        if outcome == "unknown":
            return False
        with self._lock:
            if generation == self._generation:
                self._producer = None  # fenced: unusable either way
        if outcome == "landed":
            log.warning("the transactional producer was fenced after its batch committed; replacing it")
            return True
        log.warning("the coordinator aborted the batch transaction (fenced on commit); a fresh producer carries it")
        raise BatchNotCommitted("the batch transaction was aborted by its coordinator")

    def _committed(self, partitions: list[TP]) -> dict[TP, tuple[int, str]]:
        admin = make_admin(self._bootstrap)
        request = ConsumerGroupTopicPartitions(self._group, [TopicPartition(t, p) for t, p in partitions])
        future = admin.list_consumer_group_offsets([request], require_stable=True)[self._group]
        listed = future.result(timeout=self._timeout).topic_partitions or []
        return {(tp.topic, tp.partition): (tp.offset, tp.metadata or "") for tp in listed if tp.error is None}

    def abandon(self) -> bool:
        """Give up the producer stuck in this flight, unless its commit is already sent."""
        with self._lock:
            if self._sending_commit:
                return False
            self._generation += 1
            self._producer = None
        log.warning("the transactional producer is stuck inside the client before its commit was sent; "
                    "replacing it (the batch is kept)")
        return True

    def _give_up(self, exc: KafkaException, refused: dict[int, str | None], producer: Producer,
                 generation: int) -> NoReturn:
        """Before its commit was sent, abandon the transaction: the batch is kept for the next one."""
        error = error_of(exc)
        permanent = is_permanent(error) or bool(refused)
        if generation != self._generation:  # given up while stuck: the settler has moved on
            raise BatchNotCommitted(f"abandoned batch transaction failed: {error}", permanent) from exc
        if classify(error) is not TxnAction.FATAL and self._abort(producer):
            raise BatchNotCommitted(f"batch transaction aborted: {error}", permanent, refused=refused) from exc
        # The producer is unusable (fenced, or an abort the coordinator refused while it moved), but
        # no commit of this transaction was ever sent: the coordinator aborts it at its timeout. A
        # fresh producer carries the batch next time.
        log.warning("replacing the transactional producer after: %s", error)
        with self._lock:
            if generation == self._generation:
                self._producer = None
        raise BatchNotCommitted(f"batch transaction abandoned: {error}", permanent, refused=refused) from exc

    def _abort(self, producer: Producer) -> bool:
        """Abort the open transaction; False if even that failed (the producer is unusable)."""
        try:
            retrying(lambda: producer.abort_transaction(self._timeout), self._timeout)
            return True
        except KafkaException as exc:
            log.error("could not abort the batch transaction: %s", exc)
            return False

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(self._timeout)
