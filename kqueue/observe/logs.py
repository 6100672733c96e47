"""Lifecycle logs: one structured line per task event (completions and starts at DEBUG, failed
attempts and dead letters at WARNING), and the text / JSON formats of the CLI.

Every line carries the same fields (task_id, task, queue, attempt, key, duration_s, and for
failures error_type and, where the task went, destination), as `extra` on the record, so the JSON
format writes them as keys and the text format appends them as key=value. Payloads are never logged;
error messages are (they say why), cut to a bounded length.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from pythonjsonlogger.json import JsonFormatter

from kqueue.core.records import Settlement
from kqueue.sdk.context import TaskContext
from kqueue.sdk.middleware import Middleware, SettleEvent
from kqueue.worker.events import Completions

TASK_LOGGER = "kqueue.task"
log = logging.getLogger(TASK_LOGGER)
LOG_FORMATS = ("text", "json")
KEY_CHARS = 64
ERROR_CHARS = 300
FIELDS = ("task_id", "task", "queue", "attempt", "key", "duration_s", "error_type", "error", "destination")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s"
JSON_FORMAT = "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s"
JSON_RENAMED = {"asctime": "time", "levelname": "level", "name": "logger", "process": "pid"}
# A completion is the common case: a line each would cost a no-op worker most of its throughput, so
# at INFO completions are counted into the summary line (kqueue/observe/summary.py) instead.
# A failed attempt and a dead letter are worth a line each.
LEVEL_OF = {
    Settlement.COMPLETED: logging.DEBUG,
    Settlement.RETRIED: logging.WARNING,
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
    """A line when a task is settled: retried (to which tier) or dead-lettered; completed at DEBUG."""

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
        # The record made here rather than by log.log: its caller lookup (a stack walk for a source
        # line no format shows) cost about a tenth of a line.
        log.handle(log.makeRecord(log.name, level, "", 0, "task %s", (event.outcome.value,), None, None, fields))


class LifecycleLogWithStarts(LifecycleLog):
    """Also a line when a handler starts (DEBUG: it doubles the lines and costs the hot path)."""

    def before_run(self, ctx: TaskContext) -> None:
        log.debug("task started", extra={"task_id": ctx.task_id, "task": ctx.task_type, "queue": ctx.queue,
                                         "attempt": ctx.attempt, "key": shown_key(ctx.key)})


def lifecycle_log() -> LifecycleLog:
    return LifecycleLogWithStarts() if log.isEnabledFor(logging.DEBUG) else LifecycleLog()


class _SecondsCached(logging.Formatter):
    """`formatTime` with the strftime part made once per second (it was a tenth of a line's cost);
    the milliseconds are added as logging adds them."""

    _second = -1
    _stamp = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        second = int(record.created)
        if second != self._second:
            self._stamp = time.strftime(self.default_time_format, self.converter(record.created))
            self._second = second
        msec_format = self.default_msec_format
        return msec_format % (self._stamp, record.msecs) if msec_format else self._stamp


# Control characters as escapes: a task key or error text with a newline (or a carriage return, or
# a Unicode line separator) would otherwise start a forged line in a text log. Tab is kept.
_ESCAPES = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F) if c != 0x09}
_ESCAPES.update({c: f"\\x{c:02x}" for c in range(0x80, 0xA0)})
_ESCAPES.update({0x0A: "\\n", 0x0D: "\\r", 0x2028: "\\u2028", 0x2029: "\\u2029"})


def one_line(text: str) -> str:
    """The text with every control character written as an escape (`\\n` stays visible, on one line)."""
    return text if text.isprintable() else text.translate(_ESCAPES)


class TextFormatter(_SecondsCached):
    """The usual text line, with the lifecycle fields appended as key=value. The line is one line
    whatever it carries: control characters in the message and fields are escaped, and a traceback
    below it is indented, so only a record starts a line at column 0."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        record.message = record.getMessage()
        record.asctime = self.formatTime(record, self.datefmt)
        line = one_line(self.formatMessage(record))
        extras = [f"{name}={one_line(str(value))}" for name in FIELDS
                  if (value := record.__dict__.get(name)) is not None]
        if extras:
            line = f"{line} {' '.join(extras)}"
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        for block in (record.exc_text, self.formatStack(record.stack_info) if record.stack_info else None):
            if block:
                line += "\n" + "\n".join("  " + one_line(part) for part in block.split("\n"))
        return line


class LineFormatter(_SecondsCached, JsonFormatter):
    """python-json-logger's JSON lines, with a short cut for the lifecycle lines (one per task):
    their keys are known, so the object is built directly, in the library's key order and through
    its serializer; a unit test holds both ways to the same text. Other records (and any with a
    traceback) go the library's way."""

    def format(self, record: logging.LogRecord) -> str:
        if record.name != TASK_LOGGER or record.exc_info or record.exc_text or record.stack_info:
            return super().format(record)
        fields = record.__dict__
        line: dict[str, Any] = {"time": self.formatTime(record), "level": record.levelname, "logger": record.name,
                                "pid": record.process, "message": record.getMessage()}
        for name in FIELDS:
            if name in fields:
                line[name] = fields[name]
        return self.jsonify_log_record(line)


def formatter(kind: str) -> logging.Formatter:
    if kind == "json":
        return LineFormatter(JSON_FORMAT, rename_fields=JSON_RENAMED)
    return TextFormatter()
