"""What README's "Ordering" promises beyond per-key order (tests/integration/test_worker_roundtrip.py):
a failed attempt leaves the key's line, and the priority lanes do not wait on each other."""

from __future__ import annotations

import threading
import time
from typing import Any

import kqueue
from tests.support.kafka import Kafka, unique
from tests.support.worker import ThreadedWorker, wait_for


def test_a_failed_attempt_leaves_the_line_and_returns_behind_the_keys_queued_tasks(kafka: Kafka) -> None:
    app = kqueue.App("ordering", kafka.bootstrap, partitions=1)
    queue = unique("line")
    done: list[str] = []
    lock = threading.Lock()

    @app.task(queue=queue, backoff=kqueue.RetryPolicy(base=1.0, jitter=0.0))
    def step(payload: dict[str, Any], ctx: kqueue.TaskContext) -> None:
        if payload["name"] == "first" and ctx.attempt == 1:
            raise RuntimeError("first attempt fails")
        with lock:
            done.append(payload["name"])

    for name in ("first", "second", "third"):
        step.enqueue({"name": name}, key="same-key")
    app.flush()
    with ThreadedWorker(app, group=unique("g"), concurrency=4) as worker:
        wait_for(lambda: len(done) == 2, timeout=30, what="the key's later tasks")
        assert done == ["second", "third"]  # they did not wait for the retry
        step.enqueue({"name": "fourth"}, key="same-key")  # queued before the retry is due (1 s)
        app.flush()
        wait_for(lambda: len(done) == 4, timeout=30, what="the retry")
        worker.stop()
    assert done == ["second", "third", "fourth", "first"]  # the retry re-entered behind "fourth"


def test_a_keys_high_priority_task_does_not_wait_for_its_normal_lane(kafka: Kafka) -> None:
    app = kqueue.App("ordering", kafka.bootstrap, partitions=1)
    queue = unique("lanes")
    finished: dict[str, float] = {}

    @app.task(queue=queue)
    def work(payload: dict[str, Any]) -> None:
        time.sleep(payload["sleep"])
        finished[payload["name"]] = time.monotonic()

    work.enqueue({"name": "slow normal", "sleep": 3}, key="k")
    work.enqueue({"name": "urgent", "sleep": 0}, key="k", priority="high")
    app.flush()
    with ThreadedWorker(app, group=unique("g"), concurrency=4) as worker:
        wait_for(lambda: len(finished) == 2, timeout=30, what="both lanes")
        worker.stop()
    assert finished["urgent"] < finished["slow normal"] - 1.0
