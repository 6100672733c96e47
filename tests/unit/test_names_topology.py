"""Topic names, topic topology (replication, per-queue topics) and task ids."""

from __future__ import annotations

import uuid

import pytest

from kqueue.core import names
from kqueue.core.ids import derived_task_id, new_task_id
from kqueue.core.topology import TopicSpec, queue_topic_specs, queue_topics, replication_for, worker_topics

# -- names ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("queue", "priority", "prefix", "topic"),
    [
        ("email", "high", "", "email.high"),
        ("email", "normal", "", "email"),
        ("email", "low", "", "email.low"),
        ("email", "high", "staging.", "staging.email.high"),
        ("email", "normal", "staging.", "staging.email"),
        ("demo.email", "low", "", "demo.email.low"),
        ("demo.email", "normal", "t-", "t-demo.email"),
    ],
)
def test_lane_topic(queue: str, priority: str, prefix: str, topic: str) -> None:
    assert names.lane_topic(queue, priority, prefix) == topic


@pytest.mark.parametrize("priority", ["HIGH", "urgent", "", "Normal", " low"])
def test_lane_topic_bad_priority(priority: str) -> None:
    with pytest.raises(ValueError, match="unknown priority") as info:
        names.lane_topic("email", priority)
    assert "high, normal, low" in str(info.value)


def test_priorities_order() -> None:
    assert names.PRIORITIES == ("high", "normal", "low")


def test_delay_and_dlq_topics() -> None:
    assert names.delay_topic("email", "5s") == "email.delay.5s"
    assert names.delay_topic("email", "1h", "p.") == "p.email.delay.1h"
    assert names.dlq_topic("email") == "email.dlq"
    assert names.dlq_topic("demo.email", "p.") == "p.demo.email.dlq"
    assert names.main_topic("email") == "email"
    assert names.main_topic("email", "p.") == "p.email"


def test_system_topics() -> None:
    assert names.status_topic() == "_kqueue.status"
    assert names.control_topic() == "_kqueue.control"
    assert names.status_topic("p.") == "p._kqueue.status"
    assert names.control_topic("p.") == "p._kqueue.control"


def all_topics(queue: str, prefix: str) -> list[str]:
    return [
        *(names.lane_topic(queue, p, prefix) for p in names.PRIORITIES),
        *(names.delay_topic(queue, tier, prefix) for tier in names.DEFAULT_DELAY_TIERS),
        names.dlq_topic(queue, prefix),
        names.main_topic(queue, prefix),
    ]


QUEUES = ["email", "demo.email", "a.b.c", "orders_v2", "q-1", "x"]
PREFIXES = ["", "staging.", "t-", "team.a."]


@pytest.mark.parametrize("queue", QUEUES)
@pytest.mark.parametrize("prefix", PREFIXES)
def test_queue_of_topic_round_trip(queue: str, prefix: str) -> None:
    topics = all_topics(queue, prefix)
    assert len(set(topics)) == len(topics) - 1  # main_topic is also the normal lane
    for topic in topics:
        assert names.queue_of_topic(topic, prefix) == queue, topic


def test_queue_of_topic_examples() -> None:
    assert names.queue_of_topic("email.delay.5s") == "email"
    assert names.queue_of_topic("demo.email.delay.10m") == "demo.email"
    assert names.queue_of_topic("demo.email.dlq") == "demo.email"
    assert names.queue_of_topic("demo.email.high") == "demo.email"
    assert names.queue_of_topic("demo.email") == "demo.email"
    assert names.queue_of_topic("p.demo.email.low", "p.") == "demo.email"
    # a topic without the prefix is taken as it is
    assert names.queue_of_topic("other.email.low", "p.") == "other.email"
    # without the prefix argument the prefix stays part of the queue name
    assert names.queue_of_topic("p.email.dlq") == "p.email"


def test_header_names_are_distinct_and_lowercase() -> None:
    header_names = [v for k, v in vars(names).items() if k.startswith("H_")]
    assert len(header_names) >= 17
    assert len(set(header_names)) == len(header_names)
    assert all(h == h.lower() for h in header_names)
    assert all(h.startswith("kq-") for h in header_names if h not in ("traceparent", "tracestate"))


# -- topology -------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("brokers", "requested", "expected"),
    [
        (1, None, (1, ())),
        (0, None, (1, ())),
        (2, None, (2, ())),
        (3, None, (3, (("min.insync.replicas", "2"),))),
        (5, None, (3, (("min.insync.replicas", "2"),))),
        (12, None, (3, (("min.insync.replicas", "2"),))),
        (5, 1, (1, ())),
        (5, 2, (2, ())),
        (1, 3, (3, (("min.insync.replicas", "2"),))),
        (5, 4, (4, (("min.insync.replicas", "2"),))),
    ],
)
def test_replication_for(brokers: int, requested: int | None, expected: tuple) -> None:
    assert replication_for(brokers, requested) == expected


def test_worker_topics() -> None:
    assert worker_topics("email") == ["email.high", "email", "email.low"]
    assert worker_topics("demo.email", "p.") == ["p.demo.email.high", "p.demo.email", "p.demo.email.low"]


def test_queue_topics() -> None:
    assert queue_topics("email") == ["email.high", "email", "email.low", "email.dlq"]
    assert queue_topics("email", "p.", tiers=("1s", "5m")) == [
        "p.email.high", "p.email", "p.email.low", "p.email.delay.1s", "p.email.delay.5m", "p.email.dlq",
    ]
    every = queue_topics("demo.email", tiers=names.DEFAULT_DELAY_TIERS)
    assert len(every) == 3 + len(names.DEFAULT_DELAY_TIERS) + 1
    assert len(set(every)) == len(every)
    assert {names.queue_of_topic(t) for t in every} == {"demo.email"}


def test_queue_topic_specs() -> None:
    specs = queue_topic_specs("email", partitions=6, brokers=3, tiers=("5s",))
    assert [s.name for s in specs] == [*queue_topics("email", tiers=("5s",)), "email.dedup"]
    assert all(s.partitions == 6 for s in specs)  # one count: a key keeps its partition number
    isr = ("min.insync.replicas", "2")
    assert all(s.replication == 3 for s in specs)
    assert all(s.config == (isr,) for s in specs if ".delay." not in s.name and ".dedup" not in s.name)
    # claims: the newest per key, for as long as the longest window
    assert specs[-1].config == (isr, ("cleanup.policy", "compact,delete"), ("retention.ms", str(7 * 24 * 3600 * 1000)))
    # tier records wait from when the broker appended them
    assert all(s.config == (isr, ("message.timestamp.type", "LogAppendTime")) for s in specs if ".delay." in s.name)
    single = queue_topic_specs("email", partitions=1, brokers=1, prefix="p.")
    assert single[0] == TopicSpec("p.email.high", 1, 1, ())
    explicit = queue_topic_specs("email", partitions=2, brokers=5, replication=2)
    assert {(s.replication, s.config) for s in explicit if ".dedup" not in s.name} == {(2, ())}
    assert TopicSpec("t", 1).replication == -1


# -- ids -------------------------------------------------------------------------------------------

def test_derived_task_id_stable() -> None:
    first = derived_task_id("email", 3, 42)
    assert first == derived_task_id("email", 3, 42)
    parsed = uuid.UUID(first)
    assert parsed.version == 5
    assert str(parsed) == first


def test_derived_task_id_distinct() -> None:
    ids = {
        derived_task_id(topic, partition, offset)
        for topic in ("email", "email.high", "emai", "demo.email")
        for partition in range(4)
        for offset in (0, 1, 10, 11, 101, 2**40)
    }
    assert len(ids) == 4 * 4 * 6
    # components cannot blur into each other
    assert derived_task_id("email", 1, 11) != derived_task_id("email", 11, 1)
    assert derived_task_id("e1", 1, 1) != derived_task_id("e", 11, 1)


def test_new_task_id_unique_uuid4() -> None:
    ids = [new_task_id() for _ in range(5000)]
    assert len(set(ids)) == len(ids)
    for task_id in ids[:50]:
        assert uuid.UUID(task_id).version == 4
        assert str(uuid.UUID(task_id)) == task_id
    assert derived_task_id("email", 0, 0) not in ids
