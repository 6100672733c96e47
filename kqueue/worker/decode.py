"""A Kafka record becomes a WorkItem with its handler and payload, or a Failure saying why not."""

from __future__ import annotations

from typing import cast

from confluent_kafka import Message

from kqueue.core.codec import decode_payload
from kqueue.core.errors import DecodeError
from kqueue.core.headers import TaskMeta, header_map
from kqueue.core.ids import derived_task_id
from kqueue.core.names import queue_of_topic
from kqueue.sdk.app import App
from kqueue.worker.work import Failure, WorkItem


def decode_message(msg: Message, app: App) -> tuple[WorkItem, Failure | None]:
    # A consumed (non-error) record always has these; the stubs allow None for other message kinds.
    topic, partition, offset = cast(str, msg.topic()), cast(int, msg.partition()), cast(int, msg.offset())
    headers = header_map(msg.headers())
    meta = TaskMeta.from_headers(headers)
    queue = queue_of_topic(topic, app.topic_prefix)
    item = WorkItem(
        topic=topic, partition=partition, offset=offset, key=msg.key(), value=msg.value(),
        headers=headers, meta=meta, queue=queue,
        task_id=meta.task_id or derived_task_id(topic, partition, offset),
    )
    task = app.task_for(queue, meta.task_type)
    if task is None:
        known = ", ".join(sorted(n for q, n in app.tasks if q == queue)) or "none"
        what = f"task type {meta.task_type!r}" if meta.task_type else "a record without kq-type"
        return item, Failure("UnknownTaskType", f"{what} has no handler on queue {queue!r} (known: {known})")
    item.task = task
    try:
        item.payload = decode_payload(msg.value(), meta.content_type, task.schema, app.schemas)
    except DecodeError as exc:
        return item, Failure(exc.error_type, str(exc))
    return item, None


def decode_batch(messages: list[Message], app: App) -> list[tuple[WorkItem, Failure | None]]:
    """Every record as an item, with the Failure that keeps it from running (None if it can run)."""
    return [decode_message(msg, app) for msg in messages]
