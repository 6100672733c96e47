"""A worker started with `--instance-id` keeps its transactional.id across restarts, so starting it
ends the transaction its SIGKILLed predecessor left open at once, not at the coordinator's timeout
(read_committed readers, and the next owner's committed offsets, wait behind an open transaction)."""

from __future__ import annotations

import time

from confluent_kafka import Consumer, Producer, TopicPartition

from kqueue.transport.settle import TransactionalSettler, worker_transactional_id
from tests.support.kafka import Kafka, unique

ZOMBIE_TIMEOUT_MS = 60_000  # the killed worker's transaction would block readers this long


def _leave_open_transaction(bootstrap: str, transactional_id: str, topic: str) -> Producer:
    """What a worker SIGKILLed mid-commit leaves: a transaction with a record in it, never ended."""
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": transactional_id,
                         "transaction.timeout.ms": ZOMBIE_TIMEOUT_MS})
    producer.init_transactions(30)
    producer.begin_transaction()
    producer.produce(topic, b"in the open transaction")
    producer.flush(30)
    return producer  # kept referenced and never used again, as if its process were gone


def _readable_within(bootstrap: str, topic: str, seconds: float) -> bool:
    """Whether a read_committed reader gets to the record written after the open transaction."""
    reader = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("reader"), "enable.auto.commit": False,
                       "isolation.level": "read_committed"})
    reader.assign([TopicPartition(topic, 0, 0)])
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            for msg in reader.consume(10, 0.2):
                if msg.error() is None and msg.value() == b"after":
                    return True
        return False
    finally:
        reader.close()


def _after(bootstrap: str, topic: str) -> None:
    plain = Producer({"bootstrap.servers": bootstrap})
    plain.produce(topic, b"after")
    plain.flush(30)


def test_a_restarted_worker_ends_its_predecessors_open_transaction_at_once(kafka: Kafka) -> None:
    group = unique("txn-g")
    assert worker_transactional_id(group, "pod-a") == worker_transactional_id(group, "pod-a")
    assert worker_transactional_id(group, None) != worker_transactional_id(group, None)

    # Without an instance id the restarted worker's id is new: the open transaction stays open.
    topic = kafka.create_topic(unique("txn-anon"), partitions=1)
    zombie = _leave_open_transaction(kafka.bootstrap, worker_transactional_id(group, None), topic)
    _after(kafka.bootstrap, topic)
    anonymous = TransactionalSettler(kafka.bootstrap, group)
    try:
        assert not _readable_within(kafka.bootstrap, topic, 3.0)
    finally:
        anonymous.close()

    # With one, starting the worker again fences its predecessor's id and aborts the transaction.
    topic = kafka.create_topic(unique("txn-pod"), partitions=1)
    zombie = _leave_open_transaction(kafka.bootstrap, worker_transactional_id(group, "pod-a"), topic)
    _after(kafka.bootstrap, topic)
    started = time.monotonic()
    restarted = TransactionalSettler(kafka.bootstrap, group, instance_id="pod-a")
    try:
        assert _readable_within(kafka.bootstrap, topic, 10.0)
        assert time.monotonic() - started < 10.0  # far below the 60 s the transaction had left
    finally:
        restarted.close()
    del zombie
