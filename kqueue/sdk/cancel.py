"""What `app.cancel(id)` sends and tells its caller, decided from what the status view said. Pure.

A finished task (completed, failed, cancelled) is not cancelled again: nothing is sent. An id the
view does not know, or a lookup that failed, still gets its cancel (the task may be on its way to
the view); it reaches only a task with that id enqueued before now, and expires unused otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from kqueue.core.control import ControlCommand
from kqueue.core.status import TaskStatus
from kqueue.sdk.status_client import StatusUnavailable, TaskNotFound

CancelOutcome = Literal["requested", "unchecked", "unknown", "finished"]
Lookup = TaskStatus | TaskNotFound | StatusUnavailable
CHECK_TIMEOUT = 5.0  # seconds `app.cancel` waits for the status view before it sends the cancel unchecked


@dataclass(frozen=True)
class CancelResult:
    """What became of `app.cancel(id)`.

    outcome: `requested` (sent; the task is unfinished), `unchecked` (sent; the status view could
    not be asked, `detail` says why), `unknown` (sent; the view knows no such task), `finished`
    (not sent; `status.status` is completed, failed or cancelled).
    """

    task_id: str
    outcome: CancelOutcome
    status: TaskStatus | None = None  # the view's answer, when it had one
    detail: str = ""

    @property
    def sent(self) -> bool:
        return self.outcome != "finished"

    @property
    def ok(self) -> bool:
        """The task is (or will be) cancelled as far as anyone can tell: not unknown, not finished
        otherwise than cancelled."""
        if self.outcome == "finished":
            return self.status is not None and self.status.status == "cancelled"
        return self.outcome != "unknown"

    def __str__(self) -> str:
        task_id, status = self.task_id, self.status
        if self.outcome == "finished" and status is not None:
            if status.status == "cancelled":
                return f"task {task_id} is already cancelled"
            return f"task {task_id} already finished ({status.status}): nothing to cancel"
        if self.outcome == "unknown":
            return (f"no task {task_id} is known to the status view; a cancel was sent anyway: it reaches "
                    "a task with that id enqueued before now, and expires unused otherwise")
        if self.outcome == "unchecked":
            return f"cancel requested for {task_id}, but its status could not be checked: {self.detail}"
        if status is not None and status.status == "processing":
            return (f"cancel requested for {task_id} (processing): its handler sees ctx.cancelled (an "
                    "interruptible=True async one is cancelled); if it fails, it is not retried")
        state = f" ({status.status})" if status is not None else ""
        return f"cancel requested for {task_id}{state}: workers settle it as cancelled when its turn comes"


def plan_cancel(task_id: str, looked_up: Lookup, now_ms: int) -> tuple[ControlCommand | None, CancelResult]:
    """The command to send (None: nothing to cancel) and what to tell the caller."""
    if isinstance(looked_up, StatusUnavailable):
        return ControlCommand("cancel", task_id, now_ms), CancelResult(task_id, "unchecked", detail=str(looked_up))
    if isinstance(looked_up, TaskNotFound):
        return ControlCommand("cancel", task_id, now_ms), CancelResult(task_id, "unknown")
    if looked_up.finished:
        return None, CancelResult(task_id, "finished", looked_up)
    # A task scheduled (or waiting to retry) past now: its cancel must outlive the wait, so its
    # expiry counts from when the task is due.
    due = looked_up.next_attempt_at
    command = ControlCommand("cancel", task_id, now_ms, due if due is not None and due > now_ms else None)
    return command, CancelResult(task_id, "requested", looked_up)
