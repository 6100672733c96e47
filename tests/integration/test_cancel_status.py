"""Once a cancel of a task that has not started is accepted, every status read says `cancelled`:
GET, the list, `kqueue status`, app.status; and it stays so when the worker settles it later."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from kqueue import App
from tests.apps.lifecycle import make_app
from tests.support.api import ROOT, ApiProcess
from tests.support.kafka import unique
from tests.support.worker import ThreadedWorker, wait_for


class Reads:
    """Every way a user reads a task's status."""

    def __init__(self, app: App, api: ApiProcess, queue: str) -> None:
        self.app, self.api, self.queue = app, api, queue

    def get(self, task_id: str) -> dict[str, Any]:
        code, body = self.api.request("GET", f"/api/v1/tasks/{task_id}")
        assert code == 200, (code, body)
        return dict(body)

    def listed(self, task_id: str) -> str:
        code, body = self.api.request("GET", f"/api/v1/tasks?queue={self.queue}&limit=1000")
        assert code == 200, (code, body)
        return str(next(t["status"] for t in body if t["task_id"] == task_id))

    def cli(self, task_id: str) -> str:
        shown = subprocess.run([sys.executable, "-m", "kqueue", "status", task_id, "--json"], capture_output=True,
                               text=True, cwd=ROOT, timeout=60, check=False,
                               env={**os.environ, "KQUEUE_API_URL": self.api.url})
        assert shown.returncode == 0, shown.stderr
        return str(json.loads(shown.stdout)["status"])

    def all(self, task_id: str) -> set[str]:
        return {self.get(task_id)["status"], self.listed(task_id), self.cli(task_id),
                self.app.status(task_id).status}

    def settled(self, task_id: str, timeout: float = 60) -> list[str]:
        """Poll GET until the worker has settled the cancel (no longer `cancel_requested`): the statuses seen."""
        seen: list[str] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            body = self.get(task_id)
            seen.append(body["status"])
            if not body["cancel_requested"]:
                return seen
            time.sleep(0.05)
        raise AssertionError(f"the cancel of {task_id} was never settled: saw {sorted(set(seen))}")


@pytest.fixture(scope="module")
def reads(bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Reads]:
    queue = unique("cancel-view")
    app = make_app(queue, bootstrap)
    saved = os.environ.get("KQUEUE_API_URL")
    with ApiProcess(bootstrap, queue, tmp_path_factory.mktemp("view") / "status.db") as api, \
            ThreadedWorker(app, group=unique("cancel-view-g"), concurrency=4):
        os.environ["KQUEUE_API_URL"] = api.url
        try:
            yield Reads(app, api, queue)
        finally:
            if saved is None:
                os.environ.pop("KQUEUE_API_URL", None)
            else:
                os.environ["KQUEUE_API_URL"] = saved


def test_a_scheduled_task_reads_cancelled_from_the_delete_on(reads: Reads) -> None:
    code, answer = reads.api.request("POST", "/api/v1/tasks", {"type": "add", "payload": {"a": 1, "b": 2},
                                                               "delay": 3})
    assert code == 202
    task_id = answer["task_id"]
    assert reads.get(task_id)["status"] == "scheduled"
    code, answer = reads.api.request("DELETE", f"/api/v1/tasks/{task_id}")
    assert (code, answer["status"]) == (202, "cancelled")
    body = reads.get(task_id)  # before: `scheduled` (with cancel_requested) until its delay ended
    assert (body["status"], body["cancel_requested"]) == ("cancelled", True), body
    assert body["timestamps"]["finished_at"] is not None and body["timestamps"]["next_attempt_at"] is None
    assert reads.all(task_id) == {"cancelled"}
    assert reads.app.wait(task_id, timeout=1).status == "cancelled"  # finished, as far as a caller can tell
    # The worker settles it when its time comes, with a `cancelled` event: the status never changes.
    assert set(reads.settled(task_id)) == {"cancelled"}
    settled = reads.get(task_id)
    assert settled["result"] is None and settled["attempts"] <= 1
    code, answer = reads.api.request("DELETE", f"/api/v1/tasks/{task_id}")
    assert (code, answer["status"]) == (200, "cancelled")


def test_a_task_queued_behind_its_key_reads_cancelled_and_never_runs(reads: Reads) -> None:
    tasks = reads.app.tasks
    blocker = tasks[(reads.queue, "nap")].enqueue({"seconds": 3}, key="one-key")
    behind = tasks[(reads.queue, "add")].enqueue({"a": 5, "b": 5}, key="one-key")
    reads.app.flush()
    wait_for(lambda: reads.get(blocker)["status"] == "processing", 30, "the blocker to run")
    assert reads.get(behind)["status"] == "queued"
    code, answer = reads.api.request("DELETE", f"/api/v1/tasks/{behind}")
    assert (code, answer["status"]) == (202, "cancelled")
    assert reads.all(behind) == {"cancelled"}
    assert set(reads.settled(behind)) == {"cancelled"}
    assert reads.get(behind)["result"] is None  # `add` keeps its result: it never ran
    assert reads.app.wait(blocker, timeout=30).status == "completed"


def test_a_cancel_from_the_cli_reads_cancelled_once_the_view_has_it(reads: Reads) -> None:
    task_id = reads.app.tasks[(reads.queue, "add")].enqueue({"a": 1, "b": 1}, delay=8)
    assert reads.app.status(task_id).status == "scheduled"
    cancelled = subprocess.run([sys.executable, "-m", "kqueue", "cancel", task_id], capture_output=True, text=True,
                               cwd=ROOT, timeout=60, check=False,
                               env={**os.environ, "KQUEUE_BOOTSTRAP_SERVERS": reads.app.bootstrap_servers})
    assert cancelled.returncode == 0, cancelled.stderr
    # Well before its time comes (before: `scheduled` until the worker settled it, 8 s on).
    wait_for(lambda: reads.get(task_id)["status"] == "cancelled", 5, "the view to read the cancel")
    assert reads.all(task_id) == {"cancelled"}
    assert set(reads.settled(task_id)) == {"cancelled"}
