"""Avro schemas of kqueue's own records, shipped in the package (tests check they match schemas/*.avsc)."""

from __future__ import annotations

from typing import Any

from kqueue.core.codec import AvroSchema

TASK_STATUSES = ("queued", "scheduled", "processing", "retrying", "completed", "failed", "cancelled")

TASK_EVENT: dict[str, Any] = {
    "type": "record",
    "name": "TaskEvent",
    "namespace": "dev.kqueue.system",
    "doc": "Latest lifecycle state of one task; value of _kqueue.status (key = task id).",
    "fields": [
        {"name": "task_id", "type": "string"},
        {"name": "queue", "type": "string"},
        {"name": "task_type", "type": "string"},
        {"name": "status", "type": {"type": "enum", "name": "TaskStatus", "symbols": list(TASK_STATUSES)}},
        {"name": "attempt", "type": "int", "default": 1},
        {"name": "error", "type": ["null", "string"], "default": None},
        {"name": "at_ms", "type": "long"},
    ],
}

CONTROL_COMMAND: dict[str, Any] = {
    "type": "record",
    "name": "ControlCommand",
    "namespace": "dev.kqueue.system",
    "doc": "Value of _kqueue.control (key = task id or queue name).",
    "fields": [
        {"name": "command", "type": {"type": "enum", "name": "ControlVerb", "symbols": ["cancel", "pause", "resume"]}},
        {"name": "target", "type": "string"},
        {"name": "at_ms", "type": "long"},
    ],
}

TASK_EVENT_SCHEMA = AvroSchema.from_dict(TASK_EVENT)
CONTROL_COMMAND_SCHEMA = AvroSchema.from_dict(CONTROL_COMMAND)
