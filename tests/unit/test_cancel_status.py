"""A cancel accepted for a task that has not started reads `cancelled` (view/derive.py), and stays so
when the worker settles it with a `cancelled` event."""

from __future__ import annotations

import pytest

from kqueue.view.derive import Settled, TaskRow, derive

NOW = 1_800_000_000_000


def lane(**more: object) -> TaskRow:
    return TaskRow("t1", "q", "work", "q", 0, 10, -1, 1, False, None, NOW - 5000, **more)  # type: ignore[arg-type]


@pytest.mark.parametrize("row", [
    lane(cancel_ms=NOW - 100),
    TaskRow("t1", "q", "work", "q.delay.5s", 0, 3, -1, 1, False, None, NOW - 5000, NOW + 4000, cancel_ms=NOW - 100),
    TaskRow("t1", "q", "work", "q.delay.5s", 0, 3, -1, 2, True, "5s", NOW - 5000, NOW + 4000, cancel_ms=NOW - 100),
    TaskRow("t1", "q", "work", accepted_ms=NOW - 200, not_before=NOW + 3000, tier="5s", cancel_ms=NOW - 100),
], ids=["queued", "scheduled", "retrying", "accepted-not-read-back"])
def test_a_cancel_of_a_task_not_started_reads_cancelled(row: TaskRow) -> None:
    status = derive(row, None, NOW)
    assert (status.status, status.cancel_requested, status.finished_at) == ("cancelled", True, NOW - 100)
    assert status.finished and status.next_attempt_at is None and status.tier is None


def test_the_workers_cancelled_event_says_the_same_and_settles_the_request() -> None:
    settled = derive(lane(cancel_ms=NOW - 100, event="cancelled", event_attempt=1, event_ms=NOW - 50), None, NOW)
    assert (settled.status, settled.cancel_requested) == ("cancelled", False)


def test_a_running_task_keeps_running_with_its_cancel_requested() -> None:
    running = lane(cancel_ms=NOW - 100, worker="w", started_ms=NOW - 2000, run_attempt=1, run_seen_ms=NOW - 300)
    status = derive(running, None, NOW)
    assert (status.status, status.cancel_requested) == ("processing", True)
    # Its report went stale (worker gone): it has started, so the view does not claim it will not run.
    later = derive(running, None, NOW + 60_000)
    assert (later.status, later.cancel_requested) == ("queued", True)
    # It completed despite the cancel: the commit says so.
    assert derive(running, Settled(11, "", NOW), NOW).status == "completed"


def test_a_cancel_settled_by_an_earlier_final_event_does_not_cancel_a_replay() -> None:
    replayed = TaskRow("t1", "q", "work", "q", 0, 50, 7, 1, False, None, NOW - 10, event="failed", event_attempt=2,
                       event_ms=NOW - 1000, cancel_ms=NOW - 2000)
    assert derive(replayed, None, NOW).status == "queued"
    # Cancelled after it failed: the workers still hold that cancel and settle the replay with it.
    cancelled_later = TaskRow("t1", "q", "work", "q", 0, 50, 7, 1, False, None, NOW - 10, event="failed",
                              event_attempt=2, event_ms=NOW - 1000, cancel_ms=NOW - 500)
    assert derive(cancelled_later, None, NOW).status == "cancelled"
