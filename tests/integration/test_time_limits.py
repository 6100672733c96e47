"""Time limits fail an attempt at its deadline; a task longer than max.poll.interval.ms stays in the group."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

import pytest

import kqueue
from kqueue.core import names
from kqueue.core.headers import header_map
from tests.support.kafka import Kafka, unique
from tests.support.worker import ThreadedWorker, wait_for


def test_sync_and_async_time_limits(kafka: Kafka) -> None:
    app = kqueue.App("limits", kafka.bootstrap, partitions=1)
    queue = unique("limits")
    late_results: list[str] = []
    settled_at: dict[str, float] = {}

    @app.task(queue=queue, timeout=0.5, max_attempts=1)
    def slow_sync(payload: dict[str, Any]) -> None:
        time.sleep(2.0)
        late_results.append("sync finished anyway")  # the thread runs on; its result is ignored

    @app.task(queue=queue, timeout=0.5, max_attempts=1)
    async def slow_async(payload: dict[str, Any]) -> None:
        await asyncio.sleep(5)
        late_results.append("async was not cancelled")

    @app.task(queue=queue, timeout=5, max_attempts=1)
    async def own_timeout(payload: dict[str, Any]) -> None:
        raise TimeoutError("socket read timed out")  # the handler's own failure, not our time limit

    @app.task(queue=queue, timeout=5)
    def quick(payload: dict[str, Any]) -> None:
        settled_at["quick"] = time.time()

    started = time.time()
    slow_sync.enqueue({}, key="a")
    slow_async.enqueue({}, key="b")
    quick.enqueue({}, key="a")  # same key as the slow sync task: runs after its deadline, not its end
    own_timeout.enqueue({}, key="c")
    app.flush()
    with ThreadedWorker(app, group=unique("g")) as worker:
        wait_for(lambda: worker.worker.counts.dead_lettered == 3 and "quick" in settled_at, what="limits")
        stats = worker.stop()
    assert stats.completed == 1 and stats.dead_lettered == 3
    letters = {h[names.H_TYPE]: h for h in (header_map(m.headers())
                                            for m in kafka.read_all(names.dlq_topic(queue), expected=3))}
    assert sorted(letters) == ["own_timeout", "slow_async", "slow_sync"]
    assert all(h[names.H_ERROR_TYPE] == "TimeoutError" for h in letters.values())
    assert "time limit" in letters["slow_async"][names.H_ERROR_MESSAGE]
    own = letters["own_timeout"]
    assert own[names.H_ERROR_MESSAGE] == "socket read timed out"  # not reported as a time-limit breach
    assert "own_timeout" in own[names.H_ERROR_TRACE] and "socket read timed out" in own[names.H_ERROR_TRACE]
    assert settled_at["quick"] - started < 10
    time.sleep(2)
    assert late_results == ["sync finished anyway"]


def test_task_longer_than_max_poll_interval_runs_once_without_rebalance(kafka: Kafka,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    app = kqueue.App("long", kafka.bootstrap, partitions=1)
    queue = unique("long")
    runs: list[float] = []
    lock = threading.Lock()

    @app.task(queue=queue)
    def crunch(payload: dict[str, Any]) -> None:
        with lock:
            runs.append(time.time())
        time.sleep(payload["seconds"])

    crunch.enqueue({"seconds": 25}, key="big")
    for i in range(20):
        crunch.enqueue({"seconds": 0}, key=f"small-{i}")  # other keys keep flowing meanwhile
    app.flush()
    overrides = {"max.poll.interval.ms": 10000}
    caplog.set_level(logging.INFO, logger="kqueue.worker")
    with ThreadedWorker(app, group=unique("g"), consumer_overrides=overrides) as worker:
        wait_for(lambda: worker.worker.counts.completed == 21, timeout=90, what="the long task")
        stats = worker.stop()
    assert len(runs) == 21  # the 25 s task ran once: no redelivery
    assert stats.assigned == len(kqueue.core.topology.worker_topics(queue)) + len(app.tiers.names)
    assert stats.revoked == stats.assigned  # revoked only at shutdown, never mid-task
    topics = len(kqueue.core.topology.worker_topics(queue)) + len(app.tiers.names)
    assignments = [r.getMessage() for r in caplog.records if r.getMessage().startswith("assigned")]
    assert assignments == [f"assigned {topics} partition(s) of {topics} topic(s)"]  # a summary, not the list
