"""What a handler may learn about the task it runs."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class TaskContext:
    task_id: str
    task_type: str
    queue: str
    key: bytes | None
    attempt: int
    max_attempts: int
    topic: str
    partition: int
    offset: int
    enqueued_at: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
