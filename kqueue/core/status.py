"""Task lifecycle events for `_kqueue.status` (compacted; key = task id). Pure."""

from __future__ import annotations

from dataclasses import dataclass

from kqueue.core.codec import SchemaStore, decode_payload, encode_avro
from kqueue.core.system_schemas import TASK_EVENT_SCHEMA, TASK_EVENT_V1_SCHEMA

_STORE = SchemaStore()
_STORE.add(TASK_EVENT_SCHEMA)
_STORE.add(TASK_EVENT_V1_SCHEMA)

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
        return encode_avro(TASK_EVENT_SCHEMA, {
            "task_id": self.task_id, "queue": self.queue, "task_type": self.task_type, "status": self.status,
            "attempt": self.attempt, "error": self.error, "at_ms": self.at_ms, "worker": self.worker,
            "result": self.result,
        })

    @classmethod
    def decode(cls, value: bytes) -> TaskEvent:
        record = decode_payload(value, "avro", TASK_EVENT_SCHEMA, _STORE)
        return cls(record["task_id"], record["queue"], record["task_type"], record["status"], record["attempt"],
                   record["at_ms"], record["error"], record.get("worker"), record.get("result"))
