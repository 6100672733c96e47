"""Adding workers adds capacity: every member holds its share of every lane, co-partitioned, so a
key's lanes and tiers stay on one member (KIP-848 groups with the broker's range assignor)."""

from __future__ import annotations

from collections import defaultdict
from contextlib import ExitStack
from typing import Any

import pytest

import kqueue
from kqueue.core.topology import tier_topics, worker_topics
from tests.support.kafka import Kafka, unique
from tests.support.worker import ThreadedWorker, wait_for

PARTITIONS = 6


@pytest.mark.parametrize("members", [1, 2, 3])
def test_each_worker_holds_its_share_of_every_lane(kafka: Kafka, members: int) -> None:
    app = kqueue.App("scaling", kafka.bootstrap, partitions=PARTITIONS)
    queue = unique("scale")
    topics = worker_topics(queue) + tier_topics(queue, app.tiers.names)

    @app.task(queue=queue)
    def job(payload: dict[str, Any]) -> None:
        return None

    group = unique("g")
    with ExitStack() as stack:
        workers = [stack.enter_context(ThreadedWorker(app, group=group, concurrency=2)) for _ in range(members)]

        def settled() -> bool:
            held = [w.worker.assignment() for w in workers]
            return sum(len(h) for h in held) == len(topics) * PARTITIONS and all(held)

        wait_for(settled, timeout=60, what="a stable assignment")
        for w in workers:
            by_topic: dict[str, set[int]] = defaultdict(set)
            for topic, partition in w.worker.assignment():
                by_topic[topic].add(partition)
            assert set(by_topic) == set(topics)  # a share of every lane and tier
            shares = {frozenset(p) for p in by_topic.values()}
            assert len(shares) == 1  # the same partition numbers everywhere: co-partitioned
            assert len(next(iter(shares))) == PARTITIONS // members
        completed_before = [w.worker.counts.completed for w in workers]
        for i in range(300):
            job.enqueue({"n": i}, key=f"key-{i}")
        app.flush()
        wait_for(lambda: sum(w.worker.counts.completed for w in workers) - sum(completed_before) == 300,
                 timeout=60, what="the tasks")
        assert all(w.worker.counts.completed > 0 for w in workers)  # nobody idle
