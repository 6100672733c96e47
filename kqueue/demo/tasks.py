"""Demo tasks. `kqueue demo` enqueues them and runs `kqueue consume --app kqueue.demo.tasks:app`.

Some fail on purpose: `flaky` emails fail their first attempt and succeed on the retry, `bounce`
emails fail every attempt and end in the DLQ, images of width 0 are rejected at once. Each completed
task appends its id to $KQUEUE_DEMO_LOG so the demo can count what really ran.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from kqueue import App, Reject, TaskContext
from kqueue.core.retry import RetryPolicy

EMAIL_QUEUE = "demo.email"
IMAGES_QUEUE = "demo.images"

SEND_EMAIL_SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "SendEmail",
    "namespace": "dev.kqueue.examples",
    "fields": [
        {"name": "to", "type": "string"},
        {"name": "subject", "type": "string", "default": ""},
        {"name": "body", "type": "string", "default": ""},
        {"name": "priority", "type": "int", "default": 0},
        {"name": "tags", "type": {"type": "array", "items": "string"}, "default": []},
        {"name": "reply_to", "type": ["null", "string"], "default": None},
    ],
}

# Short waits so the demo finishes in seconds: 1 s, then 2 s (the 1s tier is the shortest).
app = App("demo", retry_policy=RetryPolicy(base=1.0, factor=2.0, cap=2.0, jitter=0.1))


def _completed(ctx: TaskContext) -> None:
    log = os.environ.get("KQUEUE_DEMO_LOG")
    if log:
        with open(log, "a") as out:
            out.write(f"{ctx.task_id} {ctx.attempt}\n")


@app.task(queue=EMAIL_QUEUE, schema=SEND_EMAIL_SCHEMA, max_attempts=3)
def send_email(payload: dict[str, Any], ctx: TaskContext) -> None:
    if "bounce" in payload["tags"]:
        raise ConnectionRefusedError(f"mail server refused {payload['to']}")
    if "flaky" in payload["tags"] and ctx.attempt == 1:
        raise TimeoutError("mail server did not answer in time")
    time.sleep(0.002)  # pretend to talk to a mail server
    _completed(ctx)


@app.task(queue=IMAGES_QUEUE, timeout=5)
async def resize_image(payload: dict[str, Any], ctx: TaskContext) -> None:
    if payload.get("width", 0) <= 0:
        raise Reject(f"cannot resize to width {payload.get('width')}")
    await asyncio.sleep(0.005)  # pretend to call an image service
    _completed(ctx)
