"""Queue figures, pause, resume and the queue-wide rate limit, and dead letters for the REST API (reads
Kafka; the CLI's own functions underneath). Whether a queue is paused or limited comes from the status
view, not Kafka, per request."""

from __future__ import annotations

import threading
import time
from typing import Any

from kqueue.control import dlq
from kqueue.control.limits import limit_json
from kqueue.control.pauses import paused_json
from kqueue.control.stats import QueueNotFound, QueueStats, read_queue_stats, with_rates
from kqueue.core import names
from kqueue.core.codec import SOE_MAGIC, decode_payload
from kqueue.core.errors import DecodeError
from kqueue.core.json_rules import TOO_DEEP, renderable, text_too_deep, unrenderable
from kqueue.sdk.app import App
from kqueue.transport.inspect import read_record_at, topic_depths
from kqueue.view.liveness import WorkerLiveness
from kqueue.view.store import DeadLetterRow, StatusStore

SUMMARY_TTL = 1.0  # seconds a queue's figures are served again before Kafka is asked anew


class UnknownQueue(LookupError):
    pass


class QueueService:
    def __init__(self, app: App, store: StatusStore, group: str | None = None,
                 liveness: WorkerLiveness = WorkerLiveness()) -> None:
        self.app = app
        self.store = store
        self.group = group
        self.liveness = liveness
        self._previous: dict[str, QueueStats] = {}
        self._cache: dict[str, tuple[float, dict[str, Any]]] = {}
        self._partitions: dict[str, tuple[float, list[dict[str, Any]]]] = {}
        self._lock = threading.Lock()

    def _check(self, queue: str) -> None:
        if queue not in self.app.queues():
            raise UnknownQueue(f"no queue {queue!r} (the app's queues: {', '.join(self.app.queues())})")

    def group_of(self, queue: str) -> str:
        """The group whose lag the figures show: the one given, else the first found consuming it."""
        if self.group is not None:
            return self.group
        found = self.store.groups().get(queue) or []
        return found[0] if found else f"{names.main_topic(queue, self.app.topic_prefix)}.workers"

    def summary(self, queue: str) -> dict[str, Any]:
        """The queue's figures, read from Kafka at most once a second (pages poll them), and whether it
        is paused: {"since": epoch ms, "reason"} or None, from the status view."""
        self._check(queue)
        cached = self._cache.get(queue)
        if cached is not None and time.monotonic() - cached[0] < SUMMARY_TTL:
            out = cached[1]
        else:
            out = self._read_summary(queue)
            self._cache[queue] = (time.monotonic(), out)
        return {**out, "paused": paused_json(self.store.pauses().get(queue)),
                "limit": limit_json(self.store.limits().get(queue))}

    def pause(self, queue: str, reason: str | None) -> dict[str, Any]:
        """Pause the queue (app.pause) and show it paused at once; the state as the API answers it."""
        self._check(queue)
        state = self.app.pause(queue, reason)
        self.store.note_pause(queue, state.paused)
        return state.as_json()

    def resume(self, queue: str) -> dict[str, Any]:
        self._check(queue)
        state = self.app.resume(queue)
        self.store.note_pause(queue, state.paused)
        return state.as_json()

    def limit(self, queue: str, rate: str | None) -> dict[str, Any]:
        """Set (or with None clear) the queue-wide limit (app.limit) and show it at once."""
        self._check(queue)
        state = self.app.limit(queue, rate)
        self.store.note_limit(queue, state.limit)
        return state.as_json()

    def _read_summary(self, queue: str) -> dict[str, Any]:
        group = self.group_of(queue)
        try:
            stats = read_queue_stats(self.app.bootstrap_servers, queue, group, self.app.topic_prefix,
                                     previous=self._previous.get(queue))
        except QueueNotFound:  # registered but never used: no topics yet
            return {"queue": queue, "group": group, "lag": 0, "dlq_records": 0, "members": 0, "lanes": [],
                    "rates": {}}
        with self._lock:
            previous = self._previous.get(queue)
            rated = with_rates(previous, stats) if previous is not None else stats
            self._previous[queue] = stats
        return rated.as_json()

    def detail(self, queue: str) -> dict[str, Any]:
        out = dict(self.summary(queue))
        cached = self._partitions.get(queue)
        if cached is None or time.monotonic() - cached[0] >= SUMMARY_TTL:
            lanes = [lane["topic"] for lane in out["lanes"]]
            depths = topic_depths(self.app.bootstrap_servers, lanes, out["group"]) if lanes else []
            cached = self._partitions[queue] = (time.monotonic(), [
                {"topic": d.topic, "partition": d.partition, "records": d.records, "lag": d.lag} for d in depths])
        out["partitions"] = cached[1]
        workers = self.liveness.shown(self.store.workers(), int(time.time() * 1000))
        out["workers"] = [w for w in workers if w["group"] == out["group"]]
        return out

    def series(self, queue: str, minutes: int) -> list[dict[str, Any]]:
        self._check(queue)
        return self.store.series(queue, int(time.time() * 1000), minutes)

    # -- dead letters (listed from the status view; a payload read from Kafka when shown) ---------------
    def dead_letters(self, queue: str, limit: int, offset: int = 0, task_type: str | None = None,
                     error: str | None = None) -> tuple[list[dict[str, Any]], int]:
        """A page of the queue's dead letters (newest first) and how many the filter matches in all."""
        self._check(queue)
        topic = names.dlq_topic(queue, self.app.topic_prefix)
        rows = self.store.dead_letters(queue, limit, offset, task_type, error)
        total = self.store.count_dead_letters(queue, task_type, error)
        return [_row_json(row, pending, topic) for row, pending in rows], total

    def dead_letter(self, queue: str, task_id: str) -> dict[str, Any]:
        self._check(queue)
        rows = [(row, pending) for row, pending in self.store.dead_letters(queue, 100_000) if row.task_id == task_id]
        if not rows:
            raise LookupError(f"no dead letter of task {task_id!r} in queue {queue!r}")
        row, pending = rows[0]  # the newest
        topic = names.dlq_topic(queue, self.app.topic_prefix)
        out = _row_json(row, pending, topic)
        msg = read_record_at(self.app.bootstrap_servers, topic, row.partition, row.offset)
        if msg is None:
            out["payload"], out["headers"] = None, {}
            return out
        letter = dlq.DeadLetter.from_message(msg)
        payload = dlq.payload_of(self.app.bootstrap_servers, letter)
        out["payload"] = None if payload is None else self._readable(queue, letter, payload.value)
        out["headers"] = dict(letter.headers)
        return out

    def _readable(self, queue: str, letter: dlq.DeadLetter, value: bytes | None) -> Any:
        """The payload as JSON when it decodes (Avro with the type's schema, or JSON), else as text;
        one that JSON cannot show (nested too deep, NaN: a foreign producer's) as {"unrenderable": why}."""
        task = self.app.task_for(queue, letter.task_type or None)
        content_type = letter.headers.get(names.H_CONTENT_TYPE)
        if (value is not None and content_type != names.CONTENT_AVRO and value[:2] != SOE_MAGIC
                and text_too_deep(value)):  # JSON told before parsing: deep enough, it overflows the parser
            return unrenderable(TOO_DEEP)
        try:
            return renderable(decode_payload(value, content_type, task.schema if task is not None else None,
                                             self.app.schemas))
        except DecodeError:
            return None if value is None else value.decode("utf-8", "replace")

    def replay(self, queue: str, task_ids: list[str], everything: bool, ordered: bool = False) -> dict[str, Any]:
        self._check(queue)
        report = dlq.replay(self.app.bootstrap_servers, queue, task_ids, everything=everything,
                            prefix=self.app.topic_prefix, ordered=ordered)
        return {"replayed": [letter.task_id for letter in report.replayed],
                "skipped": [letter.task_id for letter in report.skipped],
                "missing": [letter.task_id for letter in report.missing]}


def _row_json(row: DeadLetterRow, pending: bool, topic: str) -> dict[str, Any]:
    return {"task_id": row.task_id, "type": row.task_type, "attempts": row.attempts, "failed_at": row.failed_at,
            "error": row.error, "position": f"{topic}/{row.partition}/{row.offset}", "pending": pending}
