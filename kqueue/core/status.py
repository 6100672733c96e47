"""Task lifecycle events for `_kqueue.status` (compacted; key = task id), and a task's status as the
status view derives it (`TaskStatus`, what the API answers and the SDK reads back). Pure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kqueue.core.codec import SchemaStore, decode_payload, encode_avro
from kqueue.core.system_schemas import TASK_EVENT_SCHEMA, TASK_EVENT_V1_SCHEMA, TASK_EVENT_V2_SCHEMA

_STORE = SchemaStore()
_STORE.add(TASK_EVENT_SCHEMA)
_STORE.add(TASK_EVENT_V1_SCHEMA)
_STORE.add(TASK_EVENT_V2_SCHEMA)

TERMINAL = ("completed", "failed", "cancelled")


@dataclass(frozen=True)
class TaskEvent:
    task_id: str
    queue: str
    task_type: str
    status: str
    attempt: int
    at_ms: int
    error: str | None = None
    worker: str | None = None
    result: str | None = None  # the handler's return value as JSON, for tasks that keep results

    def encode(self) -> bytes:
        # `parked` needs the newest schema; the rest keep the one older readers know.
        schema = TASK_EVENT_SCHEMA if self.status == "parked" else TASK_EVENT_V2_SCHEMA
        return encode_avro(schema, {
            "task_id": self.task_id, "queue": self.queue, "task_type": self.task_type, "status": self.status,
            "attempt": self.attempt, "error": self.error, "at_ms": self.at_ms, "worker": self.worker,
            "result": self.result,
        })

    @classmethod
    def decode(cls, value: bytes) -> TaskEvent:
        record = decode_payload(value, "avro", TASK_EVENT_SCHEMA, _STORE)
        return cls(record["task_id"], record["queue"], record["task_type"], record["status"], record["attempt"],
                   record["at_ms"], record["error"], record.get("worker"), record.get("result"))


@dataclass(frozen=True)
class TaskStatus:
    task_id: str
    status: str
    queue: str | None
    task_type: str | None
    attempts: int
    max_attempts: int | None
    enqueued_at: int | None
    started_at: int | None
    finished_at: int | None
    next_attempt_at: int | None
    tier: str | None
    worker: str | None
    error: str | None
    result: str | None
    cancel_requested: bool

    @property
    def finished(self) -> bool:
        return self.status in ("completed", "failed", "cancelled")

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> TaskStatus:
        """The inverse of `as_json` (what the SDK makes of the API's answer)."""
        import json

        times = body.get("timestamps") or {}
        result = body.get("result")
        return cls(body["task_id"], body["status"], body.get("queue"), body.get("type"), body.get("attempts", 0),
                   body.get("max_attempts"), times.get("enqueued_at"), times.get("started_at"),
                   times.get("finished_at"), times.get("next_attempt_at"), body.get("tier"), body.get("worker"),
                   body.get("error"), json.dumps(result, separators=(",", ":")) if result is not None else None,
                   bool(body.get("cancel_requested")))

    @property
    def value(self) -> Any:
        """The result the handler returned (tasks with keep_result), decoded from JSON; else None."""
        import json

        return json.loads(self.result) if self.result is not None else None

    def as_json(self) -> dict[str, Any]:
        import json

        out: dict[str, Any] = {
            "task_id": self.task_id, "status": self.status, "queue": self.queue, "type": self.task_type,
            "attempts": self.attempts, "max_attempts": self.max_attempts, "tier": self.tier,
            "worker": self.worker, "error": self.error, "cancel_requested": self.cancel_requested,
            "timestamps": {"enqueued_at": self.enqueued_at, "started_at": self.started_at,
                           "finished_at": self.finished_at, "next_attempt_at": self.next_attempt_at},
        }
        if self.result is not None:
            out["result"] = json.loads(self.result)
        return out


