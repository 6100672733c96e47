"""A test app for `kqueue consume` subprocesses: each completed task appends a line to a log file.

KQ_TEST_QUEUE names the queue, KQ_TEST_LOG the file. A line is "task_id pid key", written after
the handler's work, so a line means "completed (at least) once".
"""

from __future__ import annotations

import os
import time
from typing import Any

from kqueue import App, TaskContext

QUEUE = os.environ.get("KQ_TEST_QUEUE", "recorder")
LOG = os.environ.get("KQ_TEST_LOG", "/tmp/kqueue-recorder.log")

if os.environ.get("KQ_TEST_IMPORT_DELAY"):  # a slow app import, to stop a worker during its start-up
    time.sleep(float(os.environ["KQ_TEST_IMPORT_DELAY"]))

app = App("recorder")


@app.task(queue=QUEUE)
def record(payload: dict[str, Any], ctx: TaskContext) -> None:
    if payload.get("sleep"):
        time.sleep(float(payload["sleep"]))
    if payload.get("fail") or ctx.attempt <= int(payload.get("fail_attempts", 0)):
        raise RuntimeError(f"asked to fail: {payload.get('n')} attempt {ctx.attempt}")
    key = ctx.key.decode() if ctx.key else "-"
    with open(LOG, "a") as log:
        log.write(f"{ctx.task_id} {os.getpid()} {key}\n")
