"""Cluster administration: probing, topic creation and description."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from kqueue.core.topology import TopicSpec
from kqueue.transport.config import client_config


def make_admin(bootstrap_servers: str, quiet: bool = False) -> AdminClient:
    # quiet: while a cluster is starting, refused connections are expected, not worth a log line.
    return AdminClient({**client_config(bootstrap_servers), "log_level": 0 if quiet else 3})


def probe_cluster(bootstrap_servers: str, expected_brokers: int = 1, timeout: float = 10.0) -> None:
    """Raise unless the cluster shows all brokers and really creates and deletes a topic."""
    admin = make_admin(bootstrap_servers, quiet=True)
    meta = admin.list_topics(timeout=timeout)
    if len(meta.brokers) < expected_brokers:
        raise RuntimeError(f"{len(meta.brokers)} of {expected_brokers} brokers registered")
    name = f"_kqueue.probe.{uuid.uuid4().hex[:12]}"
    replication = min(expected_brokers, 3)
    for future in admin.create_topics([NewTopic(name, 1, replication)], operation_timeout=timeout).values():
        future.result(timeout=timeout)
    for future in admin.delete_topics([name], operation_timeout=timeout).values():
        future.result(timeout=timeout)


def unreachable(bootstrap_servers: str, timeout: float, exc: KafkaException, doing: str) -> str:
    """One line for a person: which cluster did not answer, for what, and the client's reason."""
    error = exc.args[0] if exc.args else exc
    reason = error.str() if hasattr(error, "str") else str(error)
    return (f"Kafka at {bootstrap_servers} did not answer within {timeout:g}s {doing} ({reason}); is it "
            "running, and are --bootstrap-servers / KQUEUE_BOOTSTRAP_SERVERS right?")


def broker_count(admin: AdminClient, timeout: float = 10.0) -> int:
    return len(admin.list_topics(timeout=timeout).brokers)


def existing_topics(admin: AdminClient, timeout: float = 10.0) -> dict[str, int]:
    """Topic name -> partition count."""
    meta = admin.list_topics(timeout=timeout)
    return {name: len(t.partitions) for name, t in meta.topics.items()}


def ensure_topics(admin: AdminClient, specs: Iterable[TopicSpec], timeout: float = 30.0) -> list[str]:
    """Create the topics that do not exist yet; returns the names created. Racing creators are fine."""
    have = existing_topics(admin, timeout)
    wanted = [s for s in specs if s.name not in have]
    if not wanted:
        return []
    new = [
        NewTopic(s.name, s.partitions, s.replication, config=dict(s.config)) for s in wanted
    ]
    created = []
    for name, future in admin.create_topics(new, operation_timeout=timeout).items():
        try:
            future.result(timeout=timeout)
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
                raise
    return created


def delete_topics(admin: AdminClient, names: list[str], timeout: float = 30.0) -> None:
    if not names:
        return
    for future in admin.delete_topics(names, operation_timeout=timeout).values():
        future.result(timeout=timeout)


def delete_records(bootstrap: str, topic: str, before: dict[int, int], timeout: float = 30.0) -> None:
    """Delete the records of `topic` below `before[partition]`."""
    from confluent_kafka import TopicPartition

    admin = make_admin(bootstrap)
    targets = [TopicPartition(topic, p, offset) for p, offset in before.items()]
    for future in admin.delete_records(targets, operation_timeout=timeout).values():
        future.result(timeout=timeout)
