"""Where partitions end and where groups are: the admin client's offset questions, asked in one place.

`topic_ends` is "topic ends" for every reader that needs it (the lag gauge, the API's queue depth,
the status view's fence); `group_committed` is a group's committed offsets.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from confluent_kafka import ConsumerGroupTopicPartitions, IsolationLevel, TopicPartition
from confluent_kafka.admin import OffsetSpec  # type: ignore[attr-defined]

from kqueue.core.records import TP

# The admin client (transport/admin.make_admin); typed loosely so callers need not import confluent_kafka.
Admin = Any


def topic_ends(admin: Admin, partitions: Iterable[TP], timeout: float, *, earliest: bool = False,
               committed_only: bool = True) -> dict[TP, int]:
    """Each partition's end (its last stable offset with `committed_only`, the high watermark
    without), or its first offset with `earliest`."""
    spec = OffsetSpec.earliest() if earliest else OffsetSpec.latest()  # type: ignore[no-untyped-call]
    request = {TopicPartition(t, p): spec for t, p in partitions}
    if not request:
        return {}
    level = IsolationLevel.READ_COMMITTED if committed_only else IsolationLevel.READ_UNCOMMITTED
    futures = admin.list_offsets(request, isolation_level=level, request_timeout=timeout)
    return {(tp.topic, tp.partition): f.result(timeout=timeout).offset for tp, f in futures.items()}


def group_committed(admin: Admin, group: str, partitions: Iterable[TP] | None, timeout: float) -> dict[TP, int]:
    """The group's committed offsets (of `partitions`, or of everything it committed when None)."""
    asked = None if partitions is None else [TopicPartition(t, p) for t, p in partitions]
    request = ConsumerGroupTopicPartitions(group) if asked is None else ConsumerGroupTopicPartitions(group, asked)
    future = admin.list_consumer_group_offsets([request])[group]
    listed = future.result(timeout=timeout).topic_partitions or []
    return {(tp.topic, tp.partition): tp.offset for tp in listed if tp.error is None}


def group_commits(admin: Admin, group: str, timeout: float) -> dict[TP, tuple[int, str]]:
    """Everything the group committed: offset and metadata per partition."""
    future = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group]
    listed = future.result(timeout=timeout).topic_partitions or []
    return {(tp.topic, tp.partition): (tp.offset, tp.metadata or "") for tp in listed if tp.error is None}


def partitions_of(admin: Admin, topics: Iterable[str], timeout: float) -> list[TP]:
    """The partitions of those `topics` that exist."""
    meta = admin.list_topics(timeout=timeout)
    return [(t, p) for t in topics if t in meta.topics for p in sorted(meta.topics[t].partitions)]
