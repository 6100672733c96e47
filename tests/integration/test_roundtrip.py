"""A plain confluent-kafka round trip through the session's real broker."""

from __future__ import annotations

from confluent_kafka import Producer

from tests.support.kafka import Kafka, unique


def test_produce_consume_round_trip(kafka: Kafka) -> None:
    topic = kafka.create_topic(unique("roundtrip"), partitions=3)
    producer = Producer({"bootstrap.servers": kafka.bootstrap, "acks": "all", "enable.idempotence": True})
    sent = {f"key-{i}": f"value-{i}".encode() for i in range(100)}
    for key, value in sent.items():
        producer.produce(topic, value=value, key=key)
    assert producer.flush(30) == 0
    got = kafka.read_all(topic, expected=len(sent))
    assert {m.key().decode(): m.value() for m in got} == sent
    assert len(got) == len(sent)
