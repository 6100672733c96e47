"""Pure rendering of KRaft node configuration for the dev cluster."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

CONTROLLER_PORT_OFFSET = 100  # node i listens for clients on base+i and for the quorum on base+100+i


@dataclass(frozen=True)
class NodeSpec:
    node_id: int
    broker_port: int
    controller_port: int
    data_dir: Path

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.broker_port}"


def plan_nodes(nodes: int, base_port: int, data_dir: Path) -> list[NodeSpec]:
    if nodes not in (1, 3):
        raise ValueError("the dev cluster runs 1 or 3 nodes")
    return [
        NodeSpec(
            node_id=i + 1,
            broker_port=base_port + i,
            controller_port=base_port + CONTROLLER_PORT_OFFSET + i,
            data_dir=data_dir / f"node-{i + 1}",
        )
        for i in range(nodes)
    ]


def render_properties(node: NodeSpec, all_nodes: list[NodeSpec], extra: Mapping[str, str] | None = None) -> str:
    """server.properties for one combined broker+controller node on loopback.

    extra: settings added or replaced (tests use it for an extra SASL listener; the PLAINTEXT client
    listener should stay, since the dev cluster's readiness probe uses it)."""
    voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in all_nodes)
    replicas = len(all_nodes)
    min_isr = 2 if replicas >= 3 else 1
    settings = {
        "process.roles": "broker,controller",
        "node.id": str(node.node_id),
        "controller.quorum.voters": voters,
        "listeners": f"PLAINTEXT://127.0.0.1:{node.broker_port},CONTROLLER://127.0.0.1:{node.controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{node.broker_port}",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str(node.data_dir / "log"),
        # kqueue creates its topics explicitly; a typo should fail, not create a stray topic.
        "auto.create.topics.enable": "false",
        "num.partitions": "3",
        "default.replication.factor": str(replicas),
        "min.insync.replicas": str(min_isr),
        "offsets.topic.replication.factor": str(replicas),
        # Fewer internal partitions: the dev broker starts and elects faster on a laptop.
        "offsets.topic.num.partitions": "6",
        "transaction.state.log.replication.factor": str(replicas),
        "transaction.state.log.min.isr": str(min_isr),
        "transaction.state.log.num.partitions": "6",
        "share.coordinator.state.topic.replication.factor": str(replicas),
        "share.coordinator.state.topic.min.isr": str(min_isr),
        "group.initial.rebalance.delay.ms": "0",
        # KIP-848 groups (kqueue's default): a member silent for 10 s is dropped, like the classic
        # protocol's session.timeout.ms that kqueue used to set (the broker's default is 45 s).
        "group.consumer.session.timeout.ms": "10000",
        "group.consumer.min.session.timeout.ms": "6000",
        "group.consumer.heartbeat.interval.ms": "1000",
        "group.consumer.min.heartbeat.interval.ms": "1000",
        "unclean.leader.election.enable": "false",
        "log.retention.hours": "24",
    }
    settings.update(extra or {})
    return "".join(f"{key}={value}\n" for key, value in settings.items())


LOG4J2_XML = """<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN">
  <Appenders>
    <Console name="STDOUT" target="SYSTEM_OUT">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </Console>
  </Appenders>
  <Loggers>
    <Logger name="kafka" level="INFO"/>
    <Logger name="org.apache.kafka" level="INFO"/>
    <Logger name="kafka.request.logger" level="WARN"/>
    <Logger name="state.change.logger" level="WARN"/>
    <Root level="WARN"><AppenderRef ref="STDOUT"/></Root>
  </Loggers>
</Configuration>
"""
