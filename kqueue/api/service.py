"""What the REST API does, without HTTP: enqueue, look up, cancel, queue figures, dead letters.

Reads come from the status view's store; a miss is answered only after the view has read the
lanes and tiers as far as they went when the request came in (so a task enqueued anywhere before
the GET is never reported unknown while the view is a little behind): `catchup.py` does that wait,
on the event loop and shared by every miss.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kqueue.api.catchup import CatchUp, ViewBehind
from kqueue.core import names
from kqueue.core.headers import now_ms
from kqueue.core.status import TaskStatus
from kqueue.core.topology import queue_topics
from kqueue.sdk.app import App
from kqueue.sdk.task import TaskDef, schedule_ms
from kqueue.transport.admin import KafkaUnavailable, make_admin
from kqueue.transport.offsets import partitions_of, topic_ends
from kqueue.view.derive import derive
from kqueue.view.liveness import WorkerLiveness
from kqueue.view.store import StatusStore

log = logging.getLogger("kqueue.api")
MISS_WAIT = 5.0  # seconds a miss may wait for the view to catch up before it is answered


class NotFound(LookupError):
    pass


@dataclass(frozen=True)
class CancelAnswer:
    code: int  # 202 requested, 200 already cancelled, 409 finished
    status: TaskStatus


class TaskService:
    def __init__(self, app: App, store: StatusStore, miss_wait: float = MISS_WAIT,
                 liveness: WorkerLiveness = WorkerLiveness()) -> None:
        self.app = app
        self.store = store
        self.liveness = liveness
        self._admin = make_admin(app.bootstrap_servers)
        self.catch_up = CatchUp(self._topic_ends, store.read_positions, miss_wait)

    # -- tasks --------------------------------------------------------------------------------------
    def task_def(self, task_type: str, queue: str | None) -> TaskDef:
        if queue is not None:
            found = self.app.tasks.get((queue, task_type))
            if found is None:
                raise NotFound(f"no task type {task_type!r} on queue {queue!r}")
            return found
        matches = [t for (_, name), t in self.app.tasks.items() if name == task_type]
        if not matches:
            raise NotFound(f"no task type {task_type!r}")
        if len(matches) > 1:
            raise NotFound(f"task type {task_type!r} exists on several queues: give the queue")
        return matches[0]

    async def enqueue(self, task: TaskDef, payload: Any, *, key: str | None, priority: str | int,
                      delay: float | None, run_at: datetime | None, idempotency_key: str | None) -> tuple[str, int]:
        """Produce the task and wait until Kafka has it; the view knows it as queued from now on."""
        at = now_ms()
        not_before = schedule_ms(at, delay, run_at)
        task_id = await task.enqueue_async(payload, key=key, priority=priority, delay=delay, run_at=run_at,
                                           idempotency_key=idempotency_key)
        tier = self.app.tiers.for_wait((not_before - at) / 1000) if not_before is not None else None
        try:  # off the event loop: the ingest may hold sqlite's write lock for a moment
            await asyncio.to_thread(self.store.accept, task_id, task.queue, task.name, at, not_before, tier)
        except sqlite3.Error as exc:  # the task is in Kafka: the ingest learns of it anyway
            log.warning("could not note task %s in the status view: %s", task_id, exc)
        return task_id, at

    async def status(self, task_id: str) -> TaskStatus:
        found = self._lookup(task_id)
        if found is not None:
            return found
        await self.catch_up.wait()
        found = self._lookup(task_id)
        if found is None:
            raise NotFound(f"no task {task_id!r}")
        return found

    def _lookup(self, task_id: str) -> TaskStatus | None:
        row = self.store.row(task_id)
        if row is None:
            return None
        settled = self.store.settled(row.topic, row.partition) if row.topic and row.partition is not None else None
        return derive(row, settled, now_ms(), self.liveness.silent_ms)

    def workers(self) -> list[dict[str, Any]]:
        """Every worker that reported, with its state (a gone one with nothing running), but those
        gone for longer than the liveness' drop time."""
        return self.liveness.shown(self.store.workers(), now_ms())

    def _topic_ends(self) -> dict[tuple[str, int], int]:
        """Where each lane, tier and the status topic end now (last stable offsets)."""
        topics = [t for q in self.app.queues() for t in queue_topics(q, self.app.topic_prefix, self.app.tiers.names)
                  if not t.endswith(".dlq")]
        topics.append(names.status_topic(self.app.topic_prefix))
        try:
            partitions = partitions_of(self._admin, topics, 10)
        except KafkaUnavailable as exc:
            raise ViewBehind(f"cannot reach Kafka: {exc}") from None
        try:
            # Open transactions included (a router's delivery may hold a task behind the stable offset).
            return topic_ends(self._admin, partitions, 10, committed_only=False)
        except KafkaUnavailable as exc:
            raise ViewBehind(f"cannot ask Kafka where the topics end: {exc}") from None

    async def cancel(self, task_id: str) -> CancelAnswer:
        current = await self.status(task_id)
        if current.status in ("completed", "failed"):
            return CancelAnswer(409, current)
        if current.status == "cancelled":
            return CancelAnswer(200, current)
        at = now_ms()  # the command's own time is this or later
        # Produces and waits for Kafka's ack; the status read here is the check (no second lookup).
        await asyncio.to_thread(functools.partial(self.app.cancel, task_id, known=current))
        try:  # read as cancelled from now on, not from when the ingest reads the command back
            await asyncio.to_thread(self.store.note_cancel, task_id, at)
        except sqlite3.Error as exc:  # the command is in Kafka: the ingest learns of it anyway
            log.warning("could not note the cancel of %s in the status view: %s", task_id, exc)
        return CancelAnswer(202, current)

    def recent(self, limit: int, queue: str | None = None) -> list[TaskStatus]:
        out = []
        for task_id in self.store.task_ids(limit, queue):
            found = self._lookup(task_id)
            if found is not None:
                out.append(found)
        return out
