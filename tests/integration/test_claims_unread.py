"""A keyed task whose claims (Q.dedup) cannot be read, through a real broker: the worker holds that
partition at the task and reads again with a growing pause, instead of stopping or guessing; once
the claims can be read the task runs once, and its key is honoured after."""

from __future__ import annotations

import time
from typing import Any

import kqueue
from kqueue.core import names
from tests.support.kafka import Kafka, unique
from tests.support.worker import ThreadedWorker, wait_for


def _gone(kafka: Kafka, topic: str) -> bool:
    return topic not in kafka.admin().list_topics(timeout=10).topics


def test_keyed_tasks_wait_for_claims_that_cannot_be_read(kafka: Kafka) -> None:
    queue = unique("claims")
    app = kqueue.App("claims-unread", kafka.bootstrap, partitions=1)
    ran: list[int] = []

    @app.task(queue=queue)
    def charge(payload: dict[str, Any]) -> None:
        ran.append(payload["n"])

    dedup = names.dedup_topic(queue)
    with ThreadedWorker(app, group=unique("claims-g"), concurrency=2) as worker:
        wait_for(lambda: worker.worker.assignment() != [], timeout=60, what="the worker to join")
        admin = kafka.admin()  # kept: a client collected while its future is pending cancels it
        admin.delete_topics([dedup])[dedup].result(30)
        wait_for(lambda: _gone(kafka, dedup), timeout=30, what="the claims topic to go")
        charge.enqueue({"n": 0})
        charge.enqueue({"n": 1}, idempotency_key="order-1")  # its claims cannot be read now
        charge.enqueue({"n": 2})  # behind it in the partition: waits with it
        app.flush()
        wait_for(lambda: 0 in ran, timeout=30, what="the task before the keyed one")
        time.sleep(3)  # several reads fail meanwhile
        assert ran == [0] and worker.error is None  # held, not run unchecked, and the worker lives
        # Held between reads (each retry resumes it for a moment, to fetch and meet the cut again).
        wait_for(lambda: worker.worker.state()["paused"].get(f"{queue}/0", {}).get("paused") == ["claims-unread"],
                 timeout=10, what="the partition held for its unread claims")
        # The claims topic is back, empty (a fresh App: this one remembers the queue as made).
        kqueue.App("claims-unread", kafka.bootstrap, partitions=1).ensure_queue(queue)
        wait_for(lambda: ran == [0, 1, 2], timeout=60, what="the held tasks once the claims are read")
        charge.enqueue({"n": 3}, idempotency_key="order-1")  # the same key again: not run again
        charge.enqueue({"n": 4})
        app.flush()
        wait_for(lambda: 4 in ran, timeout=30, what="the task after the repeated key")
        stats = worker.stop()
    assert ran == [0, 1, 2, 4]
    assert stats.completed == 4 and stats.dead_lettered == 0
