"""librdkafka settings kqueue relies on, in one place (DESIGN.md section 2-3).

Every Kafka client kqueue creates starts from `client_config`, which carries the user's own settings
(TLS, SASL, any librdkafka property: kqueue/transport/security.py) under kqueue's."""

from __future__ import annotations

import os
from typing import Any

from kqueue.core.oversize import MAX_RECORD_BYTES
from kqueue.transport import security
from kqueue.transport.client_log import ClientLog

DEFAULT_BOOTSTRAP = "localhost:9092"


def resolve_bootstrap(explicit: str | None) -> str:
    """The given servers, else $KQUEUE_BOOTSTRAP_SERVERS, else bootstrap.servers from the Kafka client
    settings (a --kafka-config / KQUEUE_KAFKA_CONFIG file, KQUEUE_KAFKA_BOOTSTRAP_SERVERS, configure()),
    else localhost:9092 (the dev cluster's port)."""
    return (explicit or os.environ.get("KQUEUE_BOOTSTRAP_SERVERS") or security.bootstrap_setting()
            or DEFAULT_BOOTSTRAP)


CLIENT_LOG = ClientLog()


def client_config(bootstrap: str, user_settings: bool = True) -> dict[str, Any]:
    """Settings every kqueue client shares: the user's Kafka client settings (security.kafka_settings(),
    validated: raises security.KafkaSettingsError), then the servers and kqueue's redacting logger.
    user_settings=False: kqueue's alone (the dev cluster's PLAINTEXT listener)."""
    config = security.kafka_settings() if user_settings else {}
    config.pop("bootstrap.servers", None)  # the servers given win (resolve_bootstrap picked them)
    return {**config, "bootstrap.servers": bootstrap, "logger": CLIENT_LOG}


# Tuning kqueue picked that a user's settings may change (e.g. KQUEUE_KAFKA_LINGER_MS=20). What kqueue
# must own is in security.RESERVED and refused there.
PRODUCER_DEFAULTS: dict[str, Any] = {"linger.ms": 5, "compression.type": "lz4"}
CONSUMER_DEFAULTS: dict[str, Any] = {"max.poll.interval.ms": 300000, "fetch.min.bytes": 1, "fetch.wait.max.ms": 100}


def producer_config(bootstrap: str, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        **PRODUCER_DEFAULTS,
        **client_config(bootstrap),
        "acks": "all",
        "enable.idempotence": True,
        # Same key -> same partition as Java's default partitioner, so foreign producers agree.
        "partitioner": "murmur2_random",
        # Routed records are fitted to this (core/oversize.py): keep the two the same.
        "message.max.bytes": MAX_RECORD_BYTES,
    }
    config.update(overrides)
    return config


GROUP_PROTOCOLS = ("consumer", "classic")


def consumer_config(bootstrap: str, group: str, protocol: str = "consumer", **overrides: Any) -> dict[str, Any]:
    """A group consumer that commits only what is settled and reads only committed records.

    protocol "consumer" (KIP-848, Kafka 4.0+): the broker assigns with its range assignor, which
    spreads every topic's partitions over the members on its own and gives partition i of every
    topic to the same member, so each member holds its share of every lane, with the key's lanes
    and tiers together; rebalances are incremental. Session and heartbeat are the broker's
    (group.consumer.session.timeout.ms). "classic": cooperative-sticky, for older brokers; it
    balances the total count only, so a queue's lanes may all land on one member."""
    if protocol not in GROUP_PROTOCOLS:
        raise ValueError(f"group protocol must be one of {', '.join(GROUP_PROTOCOLS)}, not {protocol!r}")
    config: dict[str, Any] = {
        **CONSUMER_DEFAULTS,
        **client_config(bootstrap),
        "group.id": group,
        "enable.auto.commit": False,  # we commit only what is settled
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
    }
    if protocol == "consumer":
        config.update({"group.protocol": "consumer", "group.remote.assignor": "range"})
    else:
        config = {"session.timeout.ms": 10000, "heartbeat.interval.ms": 1000, **config,  # tunable
                  "partition.assignment.strategy": "cooperative-sticky"}
    config.update(overrides)
    return config
