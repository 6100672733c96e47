"""The lag probe's memory of trailing transaction markers, against a real broker: a partition whose
last write was a transaction is read once to learn its last offset is a marker, then not again
until its committed offset or its end moves (before, every probe started a consumer to ask)."""

from __future__ import annotations

from confluent_kafka import Producer

from kqueue.transport.config import producer_config
from kqueue.transport.inspect import MarkerMemory
from tests.support.kafka import Kafka, unique


def _in_transaction(producer: Producer, topic: str, value: bytes) -> None:
    producer.begin_transaction()
    producer.produce(topic, value=value, partition=0)
    producer.commit_transaction(30)


def test_a_trailing_marker_is_read_once_and_again_only_when_the_partition_moves(kafka: Kafka) -> None:
    bootstrap = kafka.bootstrap
    txn_topic, plain_topic = kafka.create_topic(unique("markers"), 1), kafka.create_topic(unique("plain"), 1)
    producer = Producer(producer_config(bootstrap, **{"transactional.id": unique("marker-writer")}))
    producer.init_transactions(30)
    _in_transaction(producer, txn_topic, b"a")  # offset 0, its commit marker at 1: the end is 2
    plain = Producer(producer_config(bootstrap))
    for value in (b"x", b"y"):
        plain.produce(plain_topic, value=value, partition=0)
    plain.flush(30)  # offsets 0 and 1, no marker: the end is 2

    memory = MarkerMemory(bootstrap)
    txn_tp, plain_tp = (txn_topic, 0), (plain_topic, 0)
    # Both groups one short of the end: a marker on one, a record nobody read on the other.
    assert memory.markers({txn_tp: 1, plain_tp: 1}) == {txn_tp}
    assert memory.reads == 1
    for _ in range(3):  # the probe asks again every few seconds: the answer is remembered
        assert memory.markers({txn_tp: 1, plain_tp: 1}) == {txn_tp}
    assert memory.reads == 1

    _in_transaction(producer, txn_topic, b"b")  # offset 2, marker at 3
    assert memory.markers({txn_tp: 3, plain_tp: 1}) == {txn_tp}  # moved: read again
    assert memory.reads == 2
    assert memory.markers({plain_tp: 1}) == set() and memory.reads == 2
    assert memory.markers({txn_tp: 3}) == {txn_tp} and memory.reads == 3  # forgotten once not asked about
