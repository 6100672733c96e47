"""What a handler may learn about the task it runs."""

from __future__ import annotations

from dataclasses import dataclass, field

from kqueue.core.control import PendingCancels


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
    # The worker's pending cancels (filled by another thread); empty outside a worker.
    cancels: frozenset[str] | set[str] = field(default=frozenset(), repr=False, compare=False)

    @property
    def cancelled(self) -> bool:
        """A cancel for this task arrived while it runs: stop early if you can (raising is fine: a
        task with a pending cancel is settled `cancelled`, never retried)."""
        cancels = self.cancels
        if isinstance(cancels, PendingCancels):  # the worker's: a cancel of an earlier life of this id is not ours
            return cancels.applies_to(self.task_id, self.headers)
        return self.task_id in cancels
