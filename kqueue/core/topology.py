"""Which topics a queue has and how they are configured. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from kqueue.core import names


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication: int = -1  # -1: the broker's default.replication.factor
    config: tuple[tuple[str, str], ...] = ()


def replication_for(brokers: int, requested: int | None) -> tuple[int, tuple[tuple[str, str], ...]]:
    """Replication factor and topic config: RF 3 and min ISR 2 where the cluster has 3+ brokers."""
    replication = requested if requested is not None else min(3, max(1, brokers))
    config: tuple[tuple[str, str], ...] = (("min.insync.replicas", "2"),) if replication >= 3 else ()
    return replication, config


def worker_topics(queue: str, prefix: str = "") -> list[str]:
    """Topics a worker of `queue` consumes: the main topic and its priority lanes."""
    return [names.lane_topic(queue, p, prefix) for p in names.PRIORITIES]


def queue_topics(queue: str, prefix: str = "", tiers: Sequence[str] = ()) -> list[str]:
    """Every topic of a queue. All share one partition count so a key keeps its partition number."""
    topics = worker_topics(queue, prefix)
    topics.extend(names.delay_topic(queue, tier, prefix) for tier in tiers)
    topics.append(names.dlq_topic(queue, prefix))
    return topics


# Claims live as long as the longest window (core/dedup.MAX_WINDOW); the newest claim of a key is kept.
DEDUP_TOPIC_CONFIG: tuple[tuple[str, str], ...] = (
    ("cleanup.policy", "compact,delete"), ("retention.ms", str(7 * 24 * 3600 * 1000)))

# A tier record's due time counts from when the broker appended it, so tiers use broker time.
TIER_TOPIC_CONFIG: tuple[tuple[str, str], ...] = (("message.timestamp.type", "LogAppendTime"),)


def queue_topic_specs(
    queue: str, partitions: int, brokers: int, prefix: str = "", replication: int | None = None,
    tiers: Sequence[str] = (),
) -> list[TopicSpec]:
    rf, config = replication_for(brokers, replication)
    specs = []
    for topic in queue_topics(queue, prefix, tiers):
        extra = TIER_TOPIC_CONFIG if names.tier_of_topic(topic) is not None else ()
        specs.append(TopicSpec(topic, partitions, rf, config + extra))
    specs.append(TopicSpec(names.dedup_topic(queue, prefix), partitions, rf, config + DEDUP_TOPIC_CONFIG))
    return specs


def tier_topics(queue: str, tiers: Sequence[str], prefix: str = "") -> list[str]:
    return [names.delay_topic(queue, tier, prefix) for tier in tiers]


def system_topic_specs(brokers: int, prefix: str = "", partitions: int = 6,
                       replication: int | None = None) -> list[TopicSpec]:
    """`_kqueue.status` and `_kqueue.control`: compacted, the status topic also time-limited (7 days);
    `_kqueue.workers`: compacted and kept one hour (a report older than that describes no live worker)."""
    rf, config = replication_for(brokers, replication)
    status = (*config, ("cleanup.policy", "compact,delete"), ("retention.ms", str(7 * 24 * 3600 * 1000)))
    control = (*config, ("cleanup.policy", "compact"))
    workers = (*config, ("cleanup.policy", "compact,delete"), ("retention.ms", str(3600 * 1000)))
    return [TopicSpec(names.status_topic(prefix), partitions, rf, status),
            TopicSpec(names.control_topic(prefix), partitions, rf, control),
            TopicSpec(names.workers_topic(prefix), partitions, rf, workers)]
