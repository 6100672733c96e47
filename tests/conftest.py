"""Test fixtures: every Kafka-touching test talks to a real Apache Kafka broker."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kqueue.dev.cluster import DevCluster
from tests.support.brokers import jars_cluster, session_bootstrap
from tests.support.kafka import Kafka


@pytest.fixture(scope="session")
def bootstrap() -> Iterator[str]:
    """The session's broker: $KQUEUE_BOOTSTRAP_SERVERS, a testcontainer (KQUEUE_TEST_BROKER=docker),
    or a one-node KRaft broker from Apache Kafka's jars started for this session."""
    with session_bootstrap() as servers:
        yield servers


@pytest.fixture(scope="session")
def kafka(bootstrap: str) -> Kafka:
    return Kafka(bootstrap)


@pytest.fixture()
def cluster3() -> Iterator[DevCluster]:
    """A fresh three-node cluster (RF 3, min ISR 2) for failover tests; deleted afterwards."""
    with jars_cluster(nodes=3, start_port=11092) as cluster:
        yield cluster
