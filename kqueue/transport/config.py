"""librdkafka settings kqueue relies on, in one place (DESIGN.md section 2-3)."""

from __future__ import annotations

from typing import Any


def producer_config(bootstrap: str, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "enable.idempotence": True,
        # Same key -> same partition as Java's default partitioner, so foreign producers agree.
        "partitioner": "murmur2_random",
        "linger.ms": 5,
        "compression.type": "lz4",
    }
    config.update(overrides)
    return config


def consumer_config(bootstrap: str, group: str, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": False,  # we commit only what is settled
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        "partition.assignment.strategy": "cooperative-sticky",
        "session.timeout.ms": 10000,
        "heartbeat.interval.ms": 1000,
        "max.poll.interval.ms": 300000,
        "fetch.min.bytes": 1,
        "fetch.wait.max.ms": 100,
    }
    config.update(overrides)
    return config
