"""Demo tasks. `kqueue demo` enqueues them and runs `kqueue consume --app kqueue.demo.tasks:app`."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from kqueue import App, TaskContext

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

app = App("demo")


@app.task(queue=EMAIL_QUEUE, schema=SEND_EMAIL_SCHEMA, max_attempts=3)
def send_email(payload: dict[str, Any], ctx: TaskContext) -> None:
    if "bounce" in payload["tags"]:
        raise ConnectionRefusedError(f"mail server refused {payload['to']}")
    time.sleep(0.002)  # pretend to talk to a mail server


@app.task(queue=IMAGES_QUEUE, timeout=5)
async def resize_image(payload: dict[str, Any]) -> None:
    if payload.get("width", 0) <= 0:
        raise ValueError(f"cannot resize to width {payload.get('width')}")
    await asyncio.sleep(0.005)  # pretend to call an image service
