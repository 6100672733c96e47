"""The executor hands a rate limit's tokens out when they fall due: its ticker wakes for the next token
(not on its idle 250 ms beat, which would cap a worker at its bucket's capacity per beat), and tasks
of other types run meanwhile."""

from __future__ import annotations

import threading
import time
from typing import Any

import kqueue
from kqueue.core.ratelimit import TokenBucket
from kqueue.worker.executor import Executor
from kqueue.worker.runner import Runner
from kqueue.worker.work import WorkItem
from tests.support.worker import wait_for


def test_limited_tasks_start_at_the_rate_and_the_others_at_once() -> None:
    app = kqueue.App("rated-executor", "127.0.0.1:1")
    bucket = TokenBucket()
    started: dict[str, list[float]] = {"limited": [], "free": []}
    lock = threading.Lock()

    @app.task(queue="q", rate_limit="40/s")
    def limited(payload: dict[str, Any]) -> None:
        with lock:
            started["limited"].append(time.monotonic())

    @app.task(queue="q")
    def free(payload: dict[str, Any]) -> None:
        with lock:
            started["free"].append(time.monotonic())

    executor = Executor(4, Runner(), limits_of=lambda item: (bucket,) if item.task is limited else ())
    executor.retune({bucket: 40.0})  # one worker owning every partition: the whole limit
    items = []
    for n in range(40):
        item = WorkItem("q", n % 2, n, f"k{n}".encode(), b"{}", {}, "q")
        item.task = limited if n % 2 == 0 else free
        item.payload = {}
        items.append(item)
    begun = time.monotonic()
    executor.submit(items)
    try:
        wait_for(lambda: len(started["free"]) == 20, 5, "the unlimited tasks")
        free_done = time.monotonic() - begun
        wait_for(lambda: len(started["limited"]) == 20, 5, "the limited tasks")
        limited_done = max(started["limited"]) - begun
    finally:
        executor.stop()
    # A new bucket starts empty: 20 tokens at 40/s take 0.5 s. Looking only every 250 ms, the
    # ticker would find at most 4 saved (0.1 s of 40/s) each time: 16/s, 1.25 s.
    assert 0.45 <= limited_done < 0.9, limited_done
    assert free_done < 0.3, free_done
