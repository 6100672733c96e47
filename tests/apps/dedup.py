"""A test app for idempotency keys and unique tasks: each run is logged to KQ_TEST_LOG as
`<start|end> <key> <task id> <origin>` (origin: the position of the task's first delivery), so a
test can tell the task that ran apart from its duplicates. KQ_TEST_QUEUE names the queue."""

from __future__ import annotations

import os
import time
from typing import Any

from kqueue import App, TaskContext
from kqueue.core import names

QUEUE = os.environ.get("KQ_TEST_QUEUE", "dedup")
app = App("dedup", partitions=3)


def _log(what: str, key: str, ctx: TaskContext) -> None:
    origin = ctx.headers.get(names.H_ORIGIN) or f"{ctx.topic}/{ctx.partition}/{ctx.offset}"
    with open(os.environ["KQ_TEST_LOG"], "a", encoding="utf-8") as log:
        log.write(f"{what} {key} {ctx.task_id} {origin}\n")


@app.task(queue=QUEUE)
def charge(payload: dict[str, Any], ctx: TaskContext) -> None:
    key = ctx.headers.get(names.H_IDEMPOTENCY_KEY, "-")
    _log("start", key, ctx)
    time.sleep(float(payload.get("sleep", 0)))
    _log("end", key, ctx)


@app.task(queue=QUEUE, unique_for=120)
def sync_account(payload: dict[str, Any], ctx: TaskContext) -> None:
    key = ctx.headers.get(names.H_UNIQUE_KEY, "-")
    _log("start", key, ctx)
    time.sleep(_seconds(payload, ctx))
    _log("end", key, ctx)


def _seconds(payload: dict[str, Any], ctx: TaskContext) -> float:
    """`sleep`, or `first_sleep` for the task's first run and `sleep` for any run after it."""
    if "first_sleep" not in payload:
        return float(payload.get("sleep", 0))
    marker = f"{os.environ['KQ_TEST_LOG']}.{ctx.task_id}.ran"
    if os.path.exists(marker):
        return float(payload.get("sleep", 0))
    with open(marker, "w", encoding="utf-8"):
        return float(payload["first_sleep"])
