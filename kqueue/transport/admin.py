"""Cluster administration: probing, topic creation and description."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from kqueue.core.topology import TopicSpec
from kqueue.transport.config import client_config

# What the client raises when Kafka cannot answer: code outside transport/ catches this name.
KafkaUnavailable = KafkaException

# Errors that retrying cannot mend: wrong credentials, a TLS handshake that fails.
_REFUSALS = ("_AUTHENTICATION", "_SSL")
_REFUSED = "_kqueue_refusals"


def make_admin(bootstrap_servers: str, quiet: bool = False, user_settings: bool = True) -> AdminClient:
    # quiet: while a cluster is starting, refused connections are expected, not worth a log line.
    # user_settings=False: without the user's Kafka client settings (the dev cluster is PLAINTEXT).
    config = client_config(bootstrap_servers, user_settings)
    refusals: list[KafkaError] = []
    theirs = config.get("error_cb")

    def on_error(error: KafkaError) -> None:
        if error.name() in _REFUSALS:
            refusals[:] = [error]  # the latest is enough
        if callable(theirs):
            theirs(error)

    settings: dict[str, Any] = {**config, "log_level": 0 if quiet else 3, "error_cb": on_error}
    admin = AdminClient(settings)
    setattr(admin, _REFUSED, refusals)  # read by _metadata: a refusal ends the wait at once
    return admin


def _metadata(admin: AdminClient, timeout: float) -> Any:
    """list_topics, in growing slices so that a refusal (bad credentials, failed TLS), which the client
    reports only through its error callback, ends the wait at once instead of after `timeout`."""
    deadline = time.monotonic() + timeout
    step = 0.5
    while True:
        remaining = deadline - time.monotonic()
        try:
            return admin.list_topics(timeout=max(min(step, remaining), 0.001))
        except KafkaException:
            admin.poll(0)  # serves the error callback
            refused = getattr(admin, _REFUSED, None)
            if refused:
                raise KafkaException(refused[-1]) from None
            if time.monotonic() >= deadline:
                raise
            step *= 2


def probe_cluster(bootstrap_servers: str, expected_brokers: int = 1, timeout: float = 10.0,
                  user_settings: bool = True) -> None:
    """Raise unless the cluster shows all brokers and really creates and deletes a topic."""
    admin = make_admin(bootstrap_servers, quiet=True, user_settings=user_settings)
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
    """One line for a person: which cluster did not answer (or refused kqueue), for what, and the client's
    reason."""
    error = exc.args[0] if exc.args else exc
    reason = error.str() if hasattr(error, "str") else str(error)
    name = error.name() if hasattr(error, "name") else ""
    if name == "_AUTHENTICATION":
        return (f"Kafka at {bootstrap_servers} refused kqueue's credentials {doing} ({reason}); are "
                "sasl.mechanism, sasl.username and sasl.password right (KQUEUE_KAFKA_SASL_MECHANISM, "
                "KQUEUE_KAFKA_SASL_USERNAME, KQUEUE_KAFKA_SASL_PASSWORD, -X or --kafka-config)?")
    if name == "_SSL":
        return (f"TLS with Kafka at {bootstrap_servers} failed {doing} ({reason}); are security.protocol and the "
                "ssl.* settings right (e.g. KQUEUE_KAFKA_SSL_CA_LOCATION)?")
    return (f"Kafka at {bootstrap_servers} did not answer within {timeout:g}s {doing} ({reason}); is it "
            "running, and are --bootstrap-servers / KQUEUE_BOOTSTRAP_SERVERS right?")


def broker_count(admin: AdminClient, timeout: float = 10.0) -> int:
    return len(_metadata(admin, timeout).brokers)


def existing_topics(admin: AdminClient, timeout: float = 10.0) -> dict[str, int]:
    """Topic name -> partition count."""
    meta = _metadata(admin, timeout)
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
