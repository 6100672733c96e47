"""Enqueue by queue and type name alone (no handler here): what `kqueue produce` and the REST API use."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kqueue.core.codec import AvroSchema
from kqueue.sdk.app import App
from kqueue.sdk.task import TaskDef


def _not_runnable(payload: Any) -> None:
    raise RuntimeError("this task definition only enqueues; the worker's app runs it")


def sender_for(app: App, queue: str, task_type: str, schemas_dir: Path | None,
               max_attempts: int = 5) -> TaskDef:
    """A TaskDef for enqueueing `task_type`: Avro when `schemas_dir` has its schema, else JSON.

    The schema is found by file stem (`send_email.avsc`) or record name (`SendEmail`).
    """
    registered = app.tasks.get((queue, task_type))
    if registered is not None:
        return registered
    schema: AvroSchema | None = None
    if schemas_dir is not None and schemas_dir.is_dir():
        app.schemas.load_dir(schemas_dir)
        schema = app.schemas.by_name(task_type)
    return TaskDef(app, _not_runnable, queue, task_type, max_attempts, None, schema)
