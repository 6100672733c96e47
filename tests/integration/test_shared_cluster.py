"""Two apps with their own queues (one under a topic prefix) share a cluster without crosstalk."""

from __future__ import annotations

import threading
from typing import Any

import kqueue
from tests.support.kafka import Kafka, unique
from tests.support.worker import ThreadedWorker, wait_for


def test_two_apps_two_queues_one_cluster(kafka: Kafka) -> None:
    queue = unique("shared")
    billing = kqueue.App("billing", kafka.bootstrap)
    shipping = kqueue.App("shipping", kafka.bootstrap, topic_prefix="shipping.")
    seen: dict[str, list[int]] = {"billing": [], "shipping": []}
    lock = threading.Lock()

    @billing.task(queue=queue, name="job")
    def bill(payload: dict[str, Any]) -> None:
        with lock:
            seen["billing"].append(payload["n"])

    @shipping.task(queue=queue, name="job")  # same queue and type name, other app, prefixed topics
    def ship(payload: dict[str, Any]) -> None:
        with lock:
            seen["shipping"].append(payload["n"])

    for i in range(100):
        bill.enqueue({"n": i})
        ship.enqueue({"n": 1000 + i})
    billing.flush()
    shipping.flush()
    topics = kafka.admin().list_topics(timeout=10).topics
    assert queue in topics and f"shipping.{queue}" in topics

    with ThreadedWorker(billing, group=unique("g")) as w1, ThreadedWorker(shipping, group=unique("g")) as w2:
        wait_for(lambda: len(seen["billing"]) == 100 and len(seen["shipping"]) == 100, what="both apps")
        w1.stop()
        w2.stop()
    assert sorted(seen["billing"]) == list(range(100))
    assert sorted(seen["shipping"]) == list(range(1000, 1100))
