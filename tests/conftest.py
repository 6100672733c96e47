"""Test fixtures: every Kafka-touching test talks to a real Apache Kafka broker."""

from __future__ import annotations

import os
import shutil
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


@pytest.fixture(scope="session")
def browser_binaries() -> tuple[str, str]:
    """Chromium and chromedriver for the dashboard test ($KQUEUE_CHROMIUM, $KQUEUE_CHROMEDRIVER; Debian's
    paths by default). Missing: one line saying what to install, before any broker is started."""
    chromium = os.environ.get("KQUEUE_CHROMIUM", "/usr/bin/chromium")
    chromedriver = os.environ.get("KQUEUE_CHROMEDRIVER", "/usr/bin/chromedriver")
    missing = [path for path in (chromium, chromedriver) if not shutil.which(path)]
    if missing:
        pytest.fail(f"the dashboard test drives Chromium: {' and '.join(missing)} not found; install them with "
                    "`apt-get install chromium chromium-driver` (Debian/Ubuntu; README's needs line), or set "
                    "KQUEUE_CHROMIUM and KQUEUE_CHROMEDRIVER", pytrace=False)
    return chromium, chromedriver
