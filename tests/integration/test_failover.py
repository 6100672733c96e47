"""In a three-node cluster, acknowledged records survive the loss of their partition leader."""

from __future__ import annotations

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from kqueue.dev.cluster import DevCluster
from tests.support.kafka import Kafka, unique


@pytest.mark.cluster3
def test_acks_all_record_survives_leader_loss(cluster3: DevCluster) -> None:
    state = cluster3.load_state()
    assert state is not None and state.nodes == 3
    kafka = Kafka(state.bootstrap_servers)
    topic = kafka.create_topic(unique("failover"), partitions=1, replication=3)
    producer = Producer({"bootstrap.servers": kafka.bootstrap, "acks": "all", "enable.idempotence": True})
    for i in range(50):
        producer.produce(topic, value=f"v{i}".encode(), key=b"k")
    assert producer.flush(30) == 0

    meta = AdminClient({"bootstrap.servers": kafka.bootstrap}).list_topics(topic, timeout=10)
    partition = meta.topics[topic].partitions[0]
    assert sorted(partition.isrs) == [1, 2, 3]  # min ISR 2 would allow less; all three replicate here
    leader = partition.leader
    cluster3.stop_node(leader, hard=True)

    survivors = ",".join(f"127.0.0.1:{state.base_port + i}" for i in range(3) if i + 1 != leader)
    got = Kafka(survivors).read_all(topic, expected=50, timeout=60)
    assert [m.value() for m in got] == [f"v{i}".encode() for i in range(50)]
    new_meta = AdminClient({"bootstrap.servers": survivors}).list_topics(topic, timeout=10)
    assert new_meta.topics[topic].partitions[0].leader != leader
