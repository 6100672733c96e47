"""Where the tests' Kafka comes from: an existing cluster, the local jars, or a testcontainer."""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kqueue.dev.cluster import DevCluster
from kqueue.dev.config import CONTROLLER_PORT_OFFSET


def _free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def worker_port_offset() -> int:
    """Under pytest-xdist each worker searches its own port range, so two workers starting brokers
    at the same moment cannot both find the same range free."""
    name = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(name[2:]) * 300 if name[2:].isdigit() else 0


def free_base_port(nodes: int, start: int = 29092) -> int:
    """A base port where every node's client and controller port is free. Tests start below 32768,
    the bottom of Linux's ephemeral range (net.ipv4.ip_local_port_range), so no client connection
    can take a port between this probe and the broker's bind."""
    start += worker_port_offset()
    for base in range(start, start + 2000, 10):
        ports = [base + i for i in range(nodes)] + [base + CONTROLLER_PORT_OFFSET + i for i in range(nodes)]
        if all(_free(p) for p in ports):
            return base
    raise RuntimeError("no free port range for a test cluster")


@contextmanager
def jars_cluster(nodes: int, start_port: int) -> Iterator[DevCluster]:
    """A fresh dev cluster in a temporary folder, stopped and deleted afterwards."""
    with tempfile.TemporaryDirectory(prefix=f"kqueue-test-{nodes}n-") as tmp:
        cluster = DevCluster(Path(tmp))
        # One try: a retry here once hid a start-up bug every new user met (`dev up` on an empty
        # data dir reported a running node as exited).
        cluster.up(nodes=nodes, base_port=free_base_port(nodes, start_port))
        try:
            yield cluster
        finally:
            cluster.down(purge=True)


@contextmanager
def session_bootstrap() -> Iterator[str]:
    """KQUEUE_BOOTSTRAP_SERVERS if set; else testcontainers with KQUEUE_TEST_BROKER=docker; else jars."""
    existing = os.environ.get("KQUEUE_BOOTSTRAP_SERVERS")
    if existing:
        yield existing
        return
    if os.environ.get("KQUEUE_TEST_BROKER") == "docker":
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer().with_kraft() as container:
            yield container.get_bootstrap_server()
        return
    with jars_cluster(nodes=1, start_port=29092) as cluster:
        state = cluster.load_state()
        assert state is not None
        yield state.bootstrap_servers
