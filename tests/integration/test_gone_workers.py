"""A worker that stops reporting (SIGKILLed) is shown as gone within a few report intervals, its tasks
no longer as running, and it leaves the workers list after `--drop-workers-after`."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

from tests.support.api import ApiProcess
from tests.support.kafka import unique
from tests.support.worker import consume_process, wait_for

INTERVAL = 0.5  # what the API is told: workers report about every second, so never 5 intervals apart
DROP_AFTER = 6.0


def test_a_killed_worker_is_shown_gone_then_dropped(bootstrap: str, tmp_path: Path) -> None:
    queue, group = unique("ghost"), unique("ghost-g")
    with ApiProcess(bootstrap, queue, tmp_path / "view.db", app="tests.apps.recorder:app",
                    extra=("--worker-report-interval", str(INTERVAL), "--drop-workers-after", str(DROP_AFTER))) as api:
        worker = consume_process(bootstrap, queue, group, tmp_path / "done.log", "--concurrency", "4")
        try:
            sleepers = [_post(api, {"sleep": 60, "n": n}, key=f"k{n}") for n in range(2)]

            def mine() -> list[dict[str, Any]]:
                code, workers = api.request("GET", "/api/v1/workers")
                assert code == 200, workers
                return [w for w in workers if w["group"] == group]

            wait_for(lambda: [(w["state"], w["running"]) for w in mine()] == [("up", 2)], 60,
                     "the worker up, running both tasks")
            assert {_status(api, t) for t in sleepers} == {"processing"}
            worker.send_signal(signal.SIGKILL)
            worker.wait(10)
            killed = time.monotonic()
            # Before: `up`-looking (busy, 2 running) until its report fell out of the compacted topic.
            wait_for(lambda: [(w["state"], w["running"], w["busy"]) for w in mine()] == [("gone", 0, 0)], 30,
                     "the worker shown gone, with nothing running")
            took = time.monotonic() - killed
            assert took < 10 * INTERVAL, f"shown gone {took:.1f}s after the kill"
            assert {_status(api, t) for t in sleepers} == {"queued"}  # they will run again elsewhere
            wait_for(lambda: mine() == [], 30, "the worker dropped from the list")
            # Dropped counting from its last report, which came about a second (or, on a busy machine, a
            # little more) before the kill: not at once.
            assert time.monotonic() - killed >= DROP_AFTER / 2
            code, detail = api.request("GET", f"/api/v1/queues/{queue}")
            assert code == 200 and all(w["group"] != group for w in detail["workers"])
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait(10)


def _post(api: ApiProcess, payload: dict[str, Any], key: str) -> str:
    code, body = api.request("POST", "/api/v1/tasks", {"type": "record", "payload": payload, "key": key})
    assert code == 202, body
    return str(body["task_id"])


def _status(api: ApiProcess, task_id: str) -> str:
    code, body = api.request("GET", f"/api/v1/tasks/{task_id}")
    assert code == 200, body
    return str(body["status"])
