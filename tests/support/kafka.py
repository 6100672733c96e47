"""Small real-broker helpers for tests: unique names, topics, reading a topic to the end."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from confluent_kafka import Consumer, Message, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from kqueue.transport.inspect import wait_for_split


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@dataclass
class Kafka:
    bootstrap: str

    def admin(self) -> AdminClient:
        return AdminClient({"bootstrap.servers": self.bootstrap})

    def create_topic(self, name: str, partitions: int = 3, replication: int = -1) -> str:
        admin = self.admin()  # keep the handle alive until the futures resolve
        for future in admin.create_topics([NewTopic(name, partitions, replication)]).values():
            future.result(timeout=30)
        return name

    def read_all(self, topic: str, expected: int | None = None, timeout: float = 30.0,
                 committed_only: bool = True) -> list[Message]:
        """Every record of `topic` from the start; waits until `expected` arrive (if given)."""
        consumer = Consumer({
            "bootstrap.servers": self.bootstrap,
            "group.id": unique("reader"),
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "isolation.level": "read_committed" if committed_only else "read_uncommitted",
        })
        meta = consumer.list_topics(topic, timeout=10)
        partitions = [TopicPartition(topic, p, 0) for p in meta.topics[topic].partitions]
        consumer.assign(partitions)
        out: list[Message] = []
        deadline = time.monotonic() + timeout
        idle_since = time.monotonic()
        try:
            while time.monotonic() < deadline:
                batch = consumer.consume(500, timeout=0.2)
                good = [m for m in batch if m.error() is None]
                out.extend(good)
                if good:
                    idle_since = time.monotonic()
                if expected is not None and len(out) >= expected:
                    # a short grace so extra (duplicate) records would be seen too
                    if time.monotonic() - idle_since > 0.5:
                        break
                elif expected is None and time.monotonic() - idle_since > 1.5:
                    break
        finally:
            consumer.close()
        return out



def wait_for_members(bootstrap: str, group: str, members: int, timeout: float = 90.0) -> None:
    """Until `group` has `members` members, each holding partitions (a stable split to test against)."""
    if not wait_for_split(bootstrap, group, members, timeout):
        raise AssertionError(f"group {group} did not reach {members} member(s) holding partitions in {timeout:.0f}s")
