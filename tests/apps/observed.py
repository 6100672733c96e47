"""A test app for the operations tests: fast retries (one 1s tier) and tasks told how to fail.

Payload: {"n": int, "fail_attempts": k} fails its first k attempts; {"fail": true} always fails
(3 attempts, then the DLQ); {"sleep": s} sleeps first. KQ_TEST_QUEUE names the queue.
"""

from __future__ import annotations

import os
import time
from typing import Any

from kqueue import App, RetryPolicy, TaskContext

QUEUE = os.environ.get("KQ_TEST_QUEUE", "observed")

app = App("observed", delay_tiers=("1s",), retry_policy=RetryPolicy(base=0.2, factor=1.0, cap=0.2, jitter=0.0))


@app.task(queue=QUEUE, max_attempts=3)
def work(payload: dict[str, Any], ctx: TaskContext) -> None:
    if payload.get("sleep"):
        time.sleep(float(payload["sleep"]))
    if payload.get("fail") or ctx.attempt <= int(payload.get("fail_attempts", 0)):
        raise RuntimeError(f"asked to fail: task {payload.get('n')} attempt {ctx.attempt}")
