"""A long task holds back no task of another key on its partition, also after a stream of cheap
tasks has taught the worker's executor to wake one thread per 128 queued tasks."""

from __future__ import annotations

import threading
import time
from typing import Any

import kqueue
from kqueue.worker.executor import CHEAP_ITEM_SECONDS
from tests.support.kafka import Kafka, unique
from tests.support.worker import ThreadedWorker, wait_for

WARM_TASKS = 1000
CHEAP_TASKS = 50
LONG_SECONDS = 5.0


def test_cheap_tasks_of_other_keys_finish_long_before_a_long_one(kafka: Kafka) -> None:
    app = kqueue.App("long-and-cheap", kafka.bootstrap, partitions=1)
    queue = unique("long-cheap")
    started: dict[str, float] = {}
    finished: dict[str, float] = {}
    lock = threading.Lock()

    @app.task(queue=queue)
    def work(payload: dict[str, Any]) -> None:
        with lock:
            started[payload["name"]] = time.monotonic()
        if payload["long"]:
            time.sleep(LONG_SECONDS)
        with lock:
            finished[payload["name"]] = time.monotonic()

    def enqueue_warm_up(round_no: int) -> None:
        for i in range(WARM_TASKS):
            work.enqueue({"name": f"warm-{round_no}-{i}", "long": False}, key=f"w{i % 100}")
        app.flush()

    enqueue_warm_up(0)
    with ThreadedWorker(app, group=unique("g"), concurrency=8) as worker:
        # Cheap work until the executor takes its handlers for cheap (a busy machine may need more).
        for round_no in range(5):
            if round_no:
                enqueue_warm_up(round_no)
            wait_for(lambda round_no=round_no: len(finished) == WARM_TASKS * (round_no + 1), timeout=60,
                     what="the warm-up")
            per_item_ms = worker.worker.state()["executor"]["ms_per_item"]
            if per_item_ms <= CHEAP_ITEM_SECONDS * 1000:
                break
        assert per_item_ms <= CHEAP_ITEM_SECONDS * 1000, f"not in cheap mode after the warm-up: {per_item_ms} ms"

        work.enqueue({"name": "long", "long": True}, key="long-key")
        for i in range(CHEAP_TASKS):
            work.enqueue({"name": f"cheap-{i}", "long": False}, key=f"k{i}")
        app.flush()
        cheap = [f"cheap-{i}" for i in range(CHEAP_TASKS)]
        wait_for(lambda: all(name in finished for name in cheap) and "long" in finished,
                 timeout=60, what="the long task and the cheap ones")
        worker.stop()

    last_cheap = max(finished[name] for name in cheap)
    # Every cheap task finished within a second of the long one's start, seconds before its end.
    assert last_cheap - started["long"] < 1.0, f"cheap ones done {last_cheap - started['long']:.2f} s after"
    assert finished["long"] - last_cheap > LONG_SECONDS - 1.0
