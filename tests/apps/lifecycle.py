"""A test app for the task lifecycle tests (status view, REST API): tasks that return a result,
fail for a while, always fail, take their time, and one with an Avro schema.

`make_app(queue)` builds it for a test; `app` (queue from KQ_TEST_QUEUE) is what `kqueue api` and
`kqueue consume` load.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

from kqueue import App, RetryPolicy, TaskContext

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


def make_app(queue: str, bootstrap: str | None = None) -> App:
    app = App("lifecycle", bootstrap, partitions=3, delay_tiers=("1s", "5s"),
              retry_policy=RetryPolicy(base=0.2, factor=1.0, cap=0.2, jitter=0.0))

    @app.task(queue=queue, keep_result=True)
    def add(payload: dict[str, Any]) -> dict[str, Any]:
        return {"sum": payload["a"] + payload["b"]}

    @app.task(queue=queue, max_attempts=4)
    def flaky(payload: dict[str, Any], ctx: TaskContext) -> None:
        if ctx.attempt <= int(payload.get("fail_attempts", 1)):
            raise RuntimeError(f"attempt {ctx.attempt} fails on purpose")

    @app.task(queue=queue, max_attempts=2)
    def doomed(payload: dict[str, Any]) -> None:
        raise ValueError(f"doomed task {payload.get('n')}")

    @app.task(queue=queue)
    def nap(payload: dict[str, Any]) -> None:
        time.sleep(float(payload.get("seconds", 1)))

    @app.task(queue=queue)
    def patient(payload: dict[str, Any], ctx: TaskContext) -> None:
        """Works in small steps and stops when told (ctx.cancelled)."""
        deadline = time.monotonic() + float(payload.get("seconds", 30))
        while time.monotonic() < deadline:
            if ctx.cancelled:
                raise RuntimeError("stopping: cancelled")
            time.sleep(0.05)

    @app.task(queue=queue, interruptible=True)
    async def waiter(payload: dict[str, Any]) -> None:
        await asyncio.sleep(float(payload.get("seconds", 30)))

    @app.task(queue=queue, schema=SCHEMAS / "send_email.avsc")
    def send_email(payload: dict[str, Any]) -> None: ...

    return app


app = make_app(os.environ.get("KQ_TEST_QUEUE", "lifecycle"))
