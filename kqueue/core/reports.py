"""Worker reports for `_kqueue.workers` (compacted; key = worker id): what each worker runs now. Pure.

Workers write one about once a second; the status view reads them for `processing` (which task
runs where since when) and the dashboard for its workers table.
"""

from __future__ import annotations

from dataclasses import dataclass

from kqueue.core.codec import SchemaStore, decode_payload, encode_avro
from kqueue.core.system_schemas import WORKER_REPORT_SCHEMA

_STORE = SchemaStore()
_STORE.add(WORKER_REPORT_SCHEMA)


@dataclass(frozen=True)
class RunningTask:
    task_id: str
    queue: str
    task_type: str
    attempt: int
    started_ms: int


@dataclass(frozen=True)
class WorkerReport:
    worker_id: str
    group: str
    member_id: str
    at_ms: int
    concurrency: int
    busy: int
    partitions: tuple[str, ...]  # "topic/partition"
    running: tuple[RunningTask, ...]
    stopping: bool = False

    def encode(self) -> bytes:
        return encode_avro(WORKER_REPORT_SCHEMA, {
            "worker_id": self.worker_id, "group": self.group, "member_id": self.member_id, "at_ms": self.at_ms,
            "concurrency": self.concurrency, "busy": self.busy, "partitions": list(self.partitions),
            "running": [{"task_id": r.task_id, "queue": r.queue, "task_type": r.task_type, "attempt": r.attempt,
                         "started_ms": r.started_ms} for r in self.running],
            "stopping": self.stopping,
        })

    @classmethod
    def decode(cls, value: bytes) -> WorkerReport:
        r = decode_payload(value, "avro", WORKER_REPORT_SCHEMA, _STORE)
        running = tuple(RunningTask(t["task_id"], t["queue"], t["task_type"], t["attempt"], t["started_ms"])
                        for t in r["running"])
        return cls(r["worker_id"], r["group"], r["member_id"], r["at_ms"], r["concurrency"], r["busy"],
                   tuple(r["partitions"]), running, r["stopping"])
