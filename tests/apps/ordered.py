"""A test app for `kqueue consume` subprocesses with an ordered task type (tests/integration/test_ordered_retries.py).

KQ_TEST_QUEUE names the queue, KQ_TEST_LOG the file. Each successful run appends "key seq pid";
the first attempt of each key's seq 0 fails, so every key is blocked once and its later tasks park.
"""

from __future__ import annotations

import os
import time
from typing import Any

from kqueue import App, RetryPolicy, TaskContext

QUEUE = os.environ.get("KQ_TEST_QUEUE", "ordered")
LOG = os.environ.get("KQ_TEST_LOG", "/tmp/kqueue-ordered.log")

app = App("ordered-app")


@app.task(queue=QUEUE, ordered=True, backoff=RetryPolicy(base=1.0, jitter=0.0))
def apply(payload: dict[str, Any], ctx: TaskContext) -> None:
    time.sleep(float(payload.get("sleep", 0)))
    if payload["seq"] == 0 and ctx.attempt == 1:
        raise RuntimeError("the first change fails once")
    with open(LOG, "a") as log:
        log.write(f"{payload['key']} {payload['seq']} {os.getpid()}\n")
