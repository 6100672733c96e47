"""A task's status, derived from what the view knows about it. Pure.

Workers write nothing when a task completes (that would double the cost of a no-op task). The view
keeps, per task, its newest position in the log (a lane or a delay tier), the newest event from
`_kqueue.status` (failed, cancelled, completed with a result, queued on replay), and what worker
reports say about it running; and per lane partition the group's committed offset, published by
the ingest only once it has read every outcome that commit can stand for (the fence).
"""

from __future__ import annotations

from dataclasses import dataclass

from kqueue.core import completed as completed_metadata
from kqueue.core.status import TaskStatus
from kqueue.view.liveness import WorkerLiveness

# A report older than this describes a worker that is gone, and its task will run again elsewhere.
RUNNING_REPORT_STALE_MS = WorkerLiveness().silent_ms


@dataclass
class TaskRow:
    """What the view has recorded about one task (one row of the store)."""

    task_id: str
    queue: str | None = None
    task_type: str | None = None
    topic: str | None = None  # the newest position: a lane or a delay tier
    partition: int | None = None
    offset: int | None = None
    generation: int = -1  # the DLQ offset it was replayed from (-1: never replayed)
    attempt: int = 0
    in_tier: bool = False
    tier: str | None = None
    record_ms: int | None = None  # the position's record timestamp
    not_before: int | None = None
    enqueued_ms: int | None = None
    max_attempts: int | None = None
    error: str | None = None  # the last error (from a retry's headers or an event)
    event: str | None = None  # the newest event from _kqueue.status
    event_attempt: int | None = None
    event_ms: int | None = None
    result: str | None = None  # JSON text
    worker: str | None = None  # the worker seen running it (last attempt)
    started_ms: int | None = None
    run_attempt: int | None = None
    run_seen_ms: int | None = None  # when a worker report last listed it running
    cancel_ms: int | None = None  # a cancel was requested at
    accepted_ms: int | None = None  # the API accepted it (POST) at
    touched_ms: int = 0  # when the view last learned something about it
    done_ms: int | None = None  # when the view saw it finish (its final event, or the commit passing it)


@dataclass(frozen=True)
class Settled:
    """One lane partition's committed position, fenced: every outcome of the tasks below it is read."""

    committed: int
    metadata: str = ""
    at_ms: int = 0  # when the view published it (a completed task's finish time, at most ~1 s late)

    def covers(self, offset: int) -> bool:
        if offset < self.committed:
            return True
        if not self.metadata:
            return False
        return offset in completed_metadata.decode(self.committed, self.metadata)


FINAL = ("completed", "failed", "cancelled")
NOT_STARTED = ("queued", "scheduled", "retrying", "parked")


def derive(row: TaskRow, settled: Settled | None, now_ms: int,
           stale_ms: int = RUNNING_REPORT_STALE_MS) -> TaskStatus:
    """The status of one task. Order matters: a final event beats a position (unless the task came
    back later: a replay), a tier beats nothing, a settled lane position means completed, and a
    pending cancel of a task not seen running means cancelled (the worker settles it when its turn
    comes, with a `cancelled` event that says the same). A report older than `stale_ms` is from a
    worker that is gone: what it listed is not running."""
    status, finished = _status(row, settled, now_ms, stale_ms)
    pending = _cancel_pending(row)
    by_request = pending and status in NOT_STARTED and not _ran_this_attempt(row)
    if by_request:
        status, finished = "cancelled", row.cancel_ms
    running = status == "processing" or (row.run_attempt is not None and row.run_attempt == row.attempt)
    return TaskStatus(
        task_id=row.task_id, status=status, queue=row.queue, task_type=row.task_type,
        attempts=max(row.attempt, row.event_attempt or 0),
        max_attempts=row.max_attempts, enqueued_at=row.enqueued_ms or row.accepted_ms,
        started_at=row.started_ms if running or finished is not None else None,
        finished_at=finished, next_attempt_at=row.not_before if status in ("scheduled", "retrying") else None,
        tier=row.tier if status in ("scheduled", "retrying") else None, worker=row.worker,
        error=row.error if status != "completed" else None,
        result=row.result if status == "completed" else None,
        cancel_requested=by_request or (pending and status not in FINAL),
    )


def _cancel_pending(row: TaskRow) -> bool:
    """A cancel was requested and no final event came at or after it (a cancel stays pending for the
    workers, too, until a settlement retires it)."""
    if row.cancel_ms is None:
        return False
    return not (row.event in FINAL and row.event_ms is not None and row.event_ms >= row.cancel_ms)


def _ran_this_attempt(row: TaskRow) -> bool:
    """A worker report listed the task running on its current attempt (and after this position was
    appended: an earlier life's run does not count)."""
    return (row.run_attempt == row.attempt and row.started_ms is not None
            and (row.record_ms is None or row.started_ms >= row.record_ms - 1000))


def _status(row: TaskRow, settled: Settled | None, now_ms: int, stale_ms: int) -> tuple[str, int | None]:
    """(status, finished at)."""
    if row.event in FINAL and row.event_ms is not None and _event_is_newer(row):
        return row.event, row.event_ms
    if row.event == "parked" and (row.record_ms is None or (row.event_ms or 0) >= row.record_ms):
        # Settled where it stood (the commit passed it) to wait behind its key's retry: not completed.
        # Its copy, appended when its turn comes, is a newer position than this event.
        return "parked", None
    if row.topic is None or row.offset is None:
        # Accepted by the API (or only named by an event): not read back from the log yet.
        return ("scheduled" if row.not_before is not None and row.not_before > now_ms else "queued"), None
    if row.in_tier:
        return ("scheduled" if row.attempt <= 1 else "retrying"), None
    if settled is not None and settled.covers(row.offset):
        return "completed", row.done_ms or settled.at_ms or None
    if (_ran_this_attempt(row) and row.run_seen_ms is not None
            and now_ms - row.run_seen_ms <= stale_ms):
        return "processing", None
    return "queued", None


def _event_is_newer(row: TaskRow) -> bool:
    """A final event describes the newest position unless that position was appended after it (a
    task replayed from the DLQ or enqueued again under its id)."""
    if row.record_ms is None or row.event_ms is None:
        return True
    if row.event_attempt is not None and row.event_attempt < row.attempt:
        return False  # an older attempt's event: the task moved on
    return row.event_ms >= row.record_ms or row.generation < 0
