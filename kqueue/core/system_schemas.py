"""Avro schemas of kqueue's own records, shipped in the package (tests check they match schemas/*.avsc)."""

from __future__ import annotations

from typing import Any

from kqueue.core.codec import AvroSchema

TASK_STATUSES = ("queued", "scheduled", "processing", "retrying", "completed", "failed", "cancelled", "parked")
# The symbols before `parked` (ordered retries): a schema's fingerprint covers its enum, so the older
# versions keep them as they were, and every event but `parked` is still written with them.
_SEVEN_STATUSES: dict[str, Any] = {"name": "status", "type": {"type": "enum", "name": "TaskStatus",
                                                               "symbols": list(TASK_STATUSES[:7])}}

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
        # Added with the status view (issue 11); readers fall back to the fields above for older events.
        {"name": "worker", "type": ["null", "string"], "default": None},
        {"name": "result", "type": ["null", "string"], "default": None},
    ],
}

CONTROL_COMMAND: dict[str, Any] = {
    "type": "record",
    "name": "ControlCommand",
    "namespace": "dev.kqueue.system",
    "doc": "Value of _kqueue.control (key = task id, queue name, or '@limit:' + queue name for a limit).",
    "fields": [
        {"name": "command", "type": {"type": "enum", "name": "ControlVerb",
                                     "symbols": ["cancel", "pause", "resume", "limit"]}},
        {"name": "target", "type": "string"},
        {"name": "at_ms", "type": "long"},
        # Added with cancel expiry (a cancel of a scheduled task expires counting from when it is due).
        {"name": "due_at_ms", "type": ["null", "long"], "default": None},
        # Added with pause and resume: why a queue was paused (written only when a reason is given).
        {"name": "reason", "type": ["null", "string"], "default": None},
        # Added with queue-wide rate limits: a `limit` command's rate ("500/s"); null clears the limit.
        {"name": "rate", "type": ["null", "string"], "default": None},
    ],
}

RUNNING_TASK: dict[str, Any] = {
    "type": "record",
    "name": "RunningTask",
    "namespace": "dev.kqueue.system",
    "fields": [
        {"name": "task_id", "type": "string"},
        {"name": "queue", "type": "string"},
        {"name": "task_type", "type": "string"},
        {"name": "attempt", "type": "int"},
        {"name": "started_ms", "type": "long"},
    ],
}

WORKER_REPORT: dict[str, Any] = {
    "type": "record",
    "name": "WorkerReport",
    "namespace": "dev.kqueue.system",
    "doc": "A worker's state about once a second; value of _kqueue.workers (key = worker id).",
    "fields": [
        {"name": "worker_id", "type": "string"},
        {"name": "group", "type": "string"},
        {"name": "member_id", "type": "string"},
        {"name": "at_ms", "type": "long"},
        {"name": "concurrency", "type": "int"},
        {"name": "busy", "type": "int"},
        {"name": "partitions", "type": {"type": "array", "items": "string"}},
        {"name": "running", "type": {"type": "array", "items": RUNNING_TASK}},
        {"name": "stopping", "type": "boolean", "default": False},
    ],
}

# The TaskEvent written before `worker` and `result` existed: still decodable (schema resolution).
TASK_EVENT_V1: dict[str, Any] = {**TASK_EVENT, "fields": [*TASK_EVENT["fields"][:3], _SEVEN_STATUSES,
                                                           *TASK_EVENT["fields"][4:7]]}
# The TaskEvent before `parked`: what every other event is written with, so older readers read them.
TASK_EVENT_V2: dict[str, Any] = {**TASK_EVENT, "fields": [*TASK_EVENT["fields"][:3], _SEVEN_STATUSES,
                                                           *TASK_EVENT["fields"][4:]]}

# The versions before `limit` and `rate` (their enum had three verbs: a schema's fingerprint covers it, so
# they are spelled out as they were, or records written by them would no longer be found).
_THREE_VERBS: dict[str, Any] = {"name": "command", "type": {"type": "enum", "name": "ControlVerb",
                                                            "symbols": ["cancel", "pause", "resume"]}}
_OLD: dict[str, Any] = {**CONTROL_COMMAND, "doc": "Value of _kqueue.control (key = task id or queue name)."}
# The ControlCommand before `due_at_ms`: still written when it has no due time, so older workers read it.
CONTROL_COMMAND_V1: dict[str, Any] = {**_OLD, "fields": [_THREE_VERBS, *CONTROL_COMMAND["fields"][1:3]]}
# The ControlCommand before `reason`: still written when it has none (a cancel with a due time).
CONTROL_COMMAND_V2: dict[str, Any] = {**_OLD, "fields": [_THREE_VERBS, *CONTROL_COMMAND["fields"][1:4]]}
# The ControlCommand before `limit`: still written for pauses with a reason.
CONTROL_COMMAND_V3: dict[str, Any] = {**_OLD, "fields": [_THREE_VERBS, *CONTROL_COMMAND["fields"][1:5]]}

TASK_EVENT_SCHEMA = AvroSchema.from_dict(TASK_EVENT)
TASK_EVENT_V1_SCHEMA = AvroSchema.from_dict(TASK_EVENT_V1)
TASK_EVENT_V2_SCHEMA = AvroSchema.from_dict(TASK_EVENT_V2)
WORKER_REPORT_SCHEMA = AvroSchema.from_dict(WORKER_REPORT)
CONTROL_COMMAND_SCHEMA = AvroSchema.from_dict(CONTROL_COMMAND)
CONTROL_COMMAND_V1_SCHEMA = AvroSchema.from_dict(CONTROL_COMMAND_V1)
CONTROL_COMMAND_V2_SCHEMA = AvroSchema.from_dict(CONTROL_COMMAND_V2)
CONTROL_COMMAND_V3_SCHEMA = AvroSchema.from_dict(CONTROL_COMMAND_V3)
