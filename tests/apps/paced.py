"""A test app for pause tests (`kqueue consume` subprocesses and `kqueue api`): each task appends
"task_id pid key started_ms finished_ms" to KQ_TEST_LOG after its optional sleep, so a test can
tell when every task started. KQ_TEST_QUEUE names the queue."""

from __future__ import annotations

import os
import time
from typing import Any

from kqueue import App, TaskContext

QUEUE = os.environ.get("KQ_TEST_QUEUE", "paced")
LOG = os.environ.get("KQ_TEST_LOG", "/tmp/kqueue-paced.log")

app = App("paced")


@app.task(queue=QUEUE)
def step(payload: dict[str, Any], ctx: TaskContext) -> None:
    started = int(time.time() * 1000)
    if payload.get("sleep"):
        time.sleep(float(payload["sleep"]))
    key = ctx.key.decode() if ctx.key else "-"
    with open(LOG, "a") as log:  # one short append per line: whole lines, also from several processes
        log.write(f"{ctx.task_id} {os.getpid()} {key} {started} {int(time.time() * 1000)}\n")
