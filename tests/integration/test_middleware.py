"""Middleware through the SDK and a real broker: enqueue headers, run hooks, settle and commit events."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import kqueue
from kqueue.core.records import Settlement
from tests.support.kafka import Kafka, unique
from tests.support.worker import ThreadedWorker, wait_for


class Audit(kqueue.Middleware):
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.enqueued: list[str] = []
        self.runs: list[tuple[str, str | None]] = []
        self.settled: list[tuple[str, Settlement, str | None]] = []
        self.committed_records = 0
        self.partition_events: list[str] = []

    def on_enqueue(self, event: kqueue.EnqueueEvent) -> None:
        event.headers.append(("x-audit", b"seen"))
        self.enqueued.append(event.task_id)

    def after_run(self, ctx: kqueue.TaskContext, error: BaseException | None, seconds: float) -> None:
        with self.lock:
            self.runs.append((ctx.task_id, type(error).__name__ if error else None))

    def on_settle(self, event: kqueue.SettleEvent) -> None:
        self.settled.append((event.task_id, event.outcome, event.error_type))

    def on_commit(self, event: kqueue.CommitEvent) -> None:
        self.committed_records += event.records

    def on_partitions(self, event: kqueue.PartitionEvent) -> None:
        self.partition_events.append(event.kind)


def test_middleware_sees_a_tasks_life_through_the_broker(kafka: Kafka) -> None:
    audit = Audit()
    app = kqueue.App("audited", kafka.bootstrap, partitions=2, middleware=[audit])
    queue = unique("audit")
    seen_headers: list[str] = []

    @app.task(queue=queue, max_attempts=2, backoff=kqueue.RetryPolicy(base=1.0, jitter=0.0))
    def job(payload: dict[str, Any], ctx: kqueue.TaskContext) -> None:
        seen_headers.append(ctx.headers.get("x-audit", ""))
        if payload["fail"] and ctx.attempt <= payload["fail"]:
            raise ValueError("asked to fail")

    ok = job.enqueue({"fail": 0}, key="a")
    flaky = job.enqueue({"fail": 1}, key="b")  # fails once, then completes
    doomed = job.enqueue({"fail": 9}, key="c")  # two attempts, then the DLQ
    app.flush()
    assert audit.enqueued == [ok, flaky, doomed]
    with ThreadedWorker(app, group=unique("g")) as worker:
        wait_for(lambda: worker.worker.counts.completed == 2 and worker.worker.counts.dead_lettered == 1,
                 timeout=60, what="every task settled")
        worker.stop()
    assert seen_headers == ["seen"] * 5  # a header added on enqueue travels with every attempt
    assert Counter(task_id for task_id, _ in audit.runs) == Counter({ok: 1, flaky: 2, doomed: 2})
    settled = Counter((task_id, outcome) for task_id, outcome, _ in audit.settled)
    assert settled[(ok, Settlement.COMPLETED)] == 1
    assert settled[(flaky, Settlement.RETRIED)] == 1 and settled[(flaky, Settlement.COMPLETED)] == 1
    assert settled[(doomed, Settlement.RETRIED)] == 1 and settled[(doomed, Settlement.DEAD_LETTERED)] == 1
    assert settled[(flaky, Settlement.DELIVERED)] == 1  # the retry left its tier for the queue
    failures = {error for task_id, outcome, error in audit.settled
                if task_id == doomed and outcome in (Settlement.RETRIED, Settlement.DEAD_LETTERED)}
    assert failures == {"ValueError"}
    # Durable writes: 2 retries + a dead letter and its status event + 2 tier deliveries.
    assert audit.committed_records == 6
    assert audit.partition_events[0] == "assigned" and audit.partition_events[-1] == "revoked"
