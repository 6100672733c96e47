"""Lifecycle logs: one structured line per task event, and the text / JSON formats of the CLI.

Every line carries the same fields (task_id, task, queue, attempt, key, duration_s, and for
failures error_type and, where the task went, destination), as `extra` on the record, so the JSON
format writes them as keys and the text format appends them as key=value. Payloads are never logged;
error messages are (they say why), cut to a bounded length.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from pythonjsonlogger.json import JsonFormatter

from kqueue.core.records import Settlement
from kqueue.sdk.context import TaskContext
from kqueue.sdk.middleware import Middleware, SettleEvent
from kqueue.worker.events import Completions

log = logging.getLogger("kqueue.task")
LOG_FORMATS = ("text", "json")
KEY_CHARS = 64
ERROR_CHARS = 300
FIELDS = ("task_id", "task", "queue", "attempt", "key", "duration_s", "error_type", "error", "destination")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s"
LEVEL_OF = {
    Settlement.COMPLETED: logging.INFO,
    Settlement.RETRIED: logging.INFO,
    Settlement.DEAD_LETTERED: logging.WARNING,
    Settlement.DELIVERED: logging.DEBUG,
    Settlement.RE_TIERED: logging.DEBUG,
    Settlement.CANCELLED: logging.INFO,
}


def shown_key(key: bytes | None) -> str | None:
    if key is None:
        return None
    text = key.decode("utf-8", errors="replace")
    return text if len(text) <= KEY_CHARS else text[:KEY_CHARS] + "..."


class LifecycleLog(Middleware):
    """A line when a task is settled: completed, retried (to which tier), dead-lettered."""

    def on_settle_many(self, events: Sequence[SettleEvent]) -> None:
        # Which outcomes are logged at all, asked once per batch rather than once per task.
        shown = {outcome for outcome, level in LEVEL_OF.items() if log.isEnabledFor(level)}
        if type(events) is Completions and Settlement.COMPLETED not in shown:
            return  # their events are never built
        if shown:
            for event in events:
                if event.outcome in shown:
                    self.on_settle(event)

    def on_settle(self, event: SettleEvent) -> None:
        level = LEVEL_OF[event.outcome]
        if not log.isEnabledFor(level):
            return
        fields: dict[str, Any] = {
            "task_id": event.task_id, "task": event.task_type, "queue": event.queue, "attempt": event.attempt,
            "key": shown_key(event.key),
            "duration_s": round(event.run_seconds, 6) if event.run_seconds is not None else None,
        }
        if event.error_type is not None:
            fields["error_type"] = event.error_type
            fields["error"] = (event.error_message or "")[:ERROR_CHARS]
        if event.destination is not None:
            fields["destination"] = event.destination
        log.log(level, "task %s", event.outcome.value, extra=fields)


class LifecycleLogWithStarts(LifecycleLog):
    """Also a line when a handler starts (DEBUG: it doubles the lines and costs the hot path)."""

    def before_run(self, ctx: TaskContext) -> None:
        log.debug("task started", extra={"task_id": ctx.task_id, "task": ctx.task_type, "queue": ctx.queue,
                                         "attempt": ctx.attempt, "key": shown_key(ctx.key)})


def lifecycle_log() -> LifecycleLog:
    return LifecycleLogWithStarts() if log.isEnabledFor(logging.DEBUG) else LifecycleLog()


class TextFormatter(logging.Formatter):
    """The usual text line, with the lifecycle fields appended as key=value."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = [f"{name}={value}" for name in FIELDS if (value := record.__dict__.get(name)) is not None]
        return f"{line} {' '.join(extras)}" if extras else line


def formatter(kind: str) -> logging.Formatter:
    if kind == "json":
        renamed = {"asctime": "time", "levelname": "level", "name": "logger", "process": "pid"}
        return JsonFormatter("%(asctime)s %(levelname)s %(name)s %(process)d %(message)s", rename_fields=renamed)
    return TextFormatter()
