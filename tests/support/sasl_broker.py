"""A real one-node KRaft broker that authenticates: a SASL_PLAINTEXT listener (PLAIN, SCRAM-SHA-256,
SCRAM-SHA-512) beside the dev cluster's PLAINTEXT one, which the start-up probe and the SCRAM set-up use."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._scram import (
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialAlteration,
    UserScramCredentialUpsertion,
)

from kqueue.dev.cluster import DevCluster
from kqueue.dev.config import CONTROLLER_PORT_OFFSET
from tests.support.brokers import _free, worker_port_offset

SASL_PORT_OFFSET = 50  # node 1: clients base, SASL base+50, controller base+100
_MECHANISMS = {"SCRAM-SHA-256": ScramMechanism.SCRAM_SHA_256, "SCRAM-SHA-512": ScramMechanism.SCRAM_SHA_512}


@dataclass
class SaslBroker:
    plaintext: str  # bootstrap servers of the unauthenticated listener (test set-up only)
    sasl: str  # bootstrap servers of the SASL_PLAINTEXT listener
    plain_users: dict[str, str] = field(default_factory=dict)
    scram_users: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (mechanism, password)


def _ports(start: int) -> tuple[int, int]:
    start += worker_port_offset()
    for base in range(start, start + 2000, 10):
        if all(_free(p) for p in (base, base + SASL_PORT_OFFSET, base + CONTROLLER_PORT_OFFSET)):
            return base, base + SASL_PORT_OFFSET
    raise RuntimeError("no free port range for a SASL test broker")


def sasl_properties(sasl_port: int, base_port: int, plain_users: dict[str, str]) -> dict[str, str]:
    """What a dev node needs on top of its own settings for a SASL_PLAINTEXT listener."""
    users = " ".join(f'user_{name}="{password}"' for name, password in plain_users.items())
    scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
    return {
        "listeners": f"PLAINTEXT://127.0.0.1:{base_port},SASL_PLAINTEXT://127.0.0.1:{sasl_port},"
                     f"CONTROLLER://127.0.0.1:{base_port + CONTROLLER_PORT_OFFSET}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{base_port},SASL_PLAINTEXT://127.0.0.1:{sasl_port}",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT",
        "sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
        "listener.name.sasl_plaintext.plain.sasl.jaas.config":
            f"org.apache.kafka.common.security.plain.PlainLoginModule required {users};",
        "listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config": scram,
        "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config": scram,
    }


def _add_scram_users(admin: AdminClient, users: dict[str, tuple[str, str]]) -> None:
    upserts: list[UserScramCredentialAlteration] = [
        UserScramCredentialUpsertion(name, ScramCredentialInfo(_MECHANISMS[mechanism], 4096), password.encode())
        for name, (mechanism, password) in users.items()
    ]
    for future in admin.alter_user_scram_credentials(upserts).values():
        future.result(timeout=30)


def _wait_authenticated(sasl: str, users: dict[str, tuple[str, str]], timeout: float = 30.0) -> None:
    """Until every SCRAM user can log in on the SASL listener (credentials reach the listener a moment
    after the admin call returns)."""
    deadline = time.monotonic() + timeout
    for name, (mechanism, password) in users.items():
        admin = AdminClient({"bootstrap.servers": sasl, "security.protocol": "SASL_PLAINTEXT",
                             "sasl.mechanism": mechanism, "sasl.username": name, "sasl.password": password,
                             "log_level": 0})
        while True:
            try:
                admin.list_topics(timeout=2)
                break
            except KafkaException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)


@contextmanager
def sasl_broker(plain_users: dict[str, str], scram_users: dict[str, tuple[str, str]],
                start_port: int = 15092) -> Iterator[SaslBroker]:
    """A fresh authenticating broker in a temporary folder, stopped and deleted afterwards.
    scram_users: name -> (SCRAM-SHA-256 or SCRAM-SHA-512, password)."""
    with tempfile.TemporaryDirectory(prefix="kqueue-test-sasl-") as tmp:
        base, sasl_port = _ports(start_port)
        cluster = DevCluster(Path(tmp), extra_properties=sasl_properties(sasl_port, base, plain_users))
        cluster.up(nodes=1, base_port=base)
        try:
            broker = SaslBroker(f"127.0.0.1:{base}", f"127.0.0.1:{sasl_port}", dict(plain_users),
                                dict(scram_users))
            _add_scram_users(AdminClient({"bootstrap.servers": broker.plaintext}), scram_users)
            _wait_authenticated(broker.sasl, scram_users)
            yield broker
        finally:
            cluster.down(purge=True)
