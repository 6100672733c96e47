"""A test app for the priority tests: each completed task appends "lane monotonic_ns" to a log file,
in completion order (one open file, one lock: cheap enough for tens of thousands of tasks).

KQ_TEST_QUEUE names the queue, KQ_TEST_LOG the file. Payload {"sleep": s} sleeps first (a cheap but
not free handler, so a backlog takes seconds to drain and its order can be seen).
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from kqueue import App, TaskContext

QUEUE = os.environ.get("KQ_TEST_QUEUE", "lanes")
LOG = os.environ.get("KQ_TEST_LOG", "/tmp/kqueue-lanes.log")

app = App("lanes")
_lock = threading.Lock()
_log = open(LOG, "a", buffering=1)  # noqa: SIM115 (open for the life of the worker process)


def lane_of_topic(topic: str) -> str:
    return "high" if topic.endswith(".high") else "low" if topic.endswith(".low") else "normal"


@app.task(queue=QUEUE)
def work(payload: dict[str, Any], ctx: TaskContext) -> None:
    if payload.get("sleep"):
        time.sleep(float(payload["sleep"]))
    with _lock:
        _log.write(f"{lane_of_topic(ctx.topic)} {time.monotonic_ns()}\n")
