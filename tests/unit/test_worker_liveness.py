"""A worker's state from its last report's time, the report interval and now (view/liveness.py)."""

from __future__ import annotations

from typing import Any

import pytest

from kqueue.view.derive import TaskRow, derive
from kqueue.view.liveness import GONE_AFTER_REPORTS, WorkerLiveness, worker_state

NOW = 1_800_000_000_000


@pytest.mark.parametrize(("silent_ms", "stopping", "expected"), [
    (0, False, "up"),
    (GONE_AFTER_REPORTS * 1000, False, "up"),  # exactly five intervals: not yet
    (GONE_AFTER_REPORTS * 1000 + 1, False, "gone"),
    (GONE_AFTER_REPORTS * 1000 + 1, True, "stopped"),
    (500, True, "stopping"),
    (600_000, False, "gone"),
    (600_001, False, "dropped"),
    (600_001, True, "dropped"),
])
def test_state_from_report_time_interval_and_now(silent_ms: int, stopping: bool, expected: str) -> None:
    assert worker_state(NOW - silent_ms, 1000, NOW, stopping, drop_after_ms=600_000) == expected


def test_the_interval_scales_when_a_worker_counts_as_gone() -> None:
    assert worker_state(NOW - 3000, 500, NOW) == "gone"
    assert worker_state(NOW - 3000, 1000, NOW) == "up"


def report(at_ms: int, stopping: bool = False) -> dict[str, Any]:
    return {"worker_id": "w", "group": "g", "member_id": "m", "at_ms": at_ms, "concurrency": 8, "busy": 8,
            "partitions": ["q/0"], "running": 8, "stopping": stopping}


def test_a_gone_worker_is_listed_with_nothing_running_then_left_out() -> None:
    liveness = WorkerLiveness(report_interval_ms=1000, drop_after_ms=60_000)
    [up] = liveness.shown([report(NOW - 200)], NOW)
    assert (up["state"], up["busy"], up["running"], up["partitions"]) == ("up", 8, 8, ["q/0"])
    [gone] = liveness.shown([report(NOW - 30_000)], NOW)
    assert (gone["state"], gone["busy"], gone["running"], gone["partitions"]) == ("gone", 0, 0, [])
    assert gone["at_ms"] == NOW - 30_000  # when it was last heard from
    assert liveness.shown([report(NOW - 60_001)], NOW) == []


def test_tasks_a_gone_worker_listed_are_not_running() -> None:
    liveness = WorkerLiveness(report_interval_ms=200)
    row = TaskRow("t1", "q", "work", "q", 0, 10, -1, 1, False, None, NOW - 5000, worker="w", started_ms=NOW - 4000,
                  run_attempt=1, run_seen_ms=NOW - 1500)
    assert derive(row, None, NOW).status == "processing"  # the default interval: 1 s, so not yet gone
    assert derive(row, None, NOW, liveness.silent_ms).status == "queued"
