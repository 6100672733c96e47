"""`kqueue cancel ID` asks the status view first (defect 8): a finished or unknown id gets one line
saying so and exit 1 (a finished task's cancel is not even sent), an unfinished one gets its cancel,
and when the view cannot be asked the cancel is sent and the line says it was not checked."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from kqueue.core import names
from kqueue.core.control import ControlCommand
from tests.apps.lifecycle import make_app
from tests.support.api import ROOT, ApiProcess
from tests.support.kafka import Kafka, unique
from tests.support.worker import ThreadedWorker, wait_for


@dataclass
class Setup:
    kafka: Kafka
    api: ApiProcess
    queue: str

    def cancel(self, task_id: str, *extra: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "KQUEUE_BOOTSTRAP_SERVERS": self.kafka.bootstrap, "KQUEUE_API_URL": self.api.url}
        env.pop("KQUEUE_API_TOKEN", None)
        return subprocess.run([sys.executable, "-m", "kqueue", "cancel", task_id, *extra], capture_output=True,
                              text=True, env=env, cwd=ROOT, timeout=60, check=False)

    def status(self, task_id: str) -> str:
        code, body = self.api.request("GET", f"/api/v1/tasks/{task_id}")
        return str(body["status"]) if code == 200 else f"HTTP {code}"

    def commands_for(self, task_id: str) -> list[ControlCommand | None]:
        return [None if m.value() is None else ControlCommand.decode(m.value())
                for m in self.kafka.read_all(names.control_topic(), timeout=5) if m.key() == task_id.encode()]


def _one_line(text: str) -> str:
    assert text.strip() and "\n" not in text.strip(), text
    return text.strip()


@pytest.fixture(scope="module")
def setup(kafka: Kafka, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    queue = unique("cancel-check")
    with ApiProcess(kafka.bootstrap, queue, tmp_path_factory.mktemp("view") / "status.db") as api:
        yield Setup(kafka, api, queue)


def test_cancel_of_a_finished_task_says_so_and_sends_nothing(setup: Setup) -> None:
    app = make_app(setup.queue, setup.kafka.bootstrap)
    done = app.tasks[(setup.queue, "add")].enqueue({"a": 1, "b": 2})
    app.flush()
    with ThreadedWorker(app, group=unique("cancel-check-g"), concurrency=2):
        wait_for(lambda: setup.status(done) == "completed", 60, "the task to complete")
    answer = setup.cancel(done)
    assert answer.returncode == 1
    assert _one_line(answer.stderr) == f"error: task {done} already finished (completed): nothing to cancel"
    assert answer.stdout == ""
    assert setup.commands_for(done) == []  # no cancel waits in the topic for the next task with this id


def test_cancel_of_an_unknown_id_says_so(setup: Setup) -> None:
    never = unique("never-enqueued")
    answer = setup.cancel(never)
    assert answer.returncode == 1
    assert _one_line(answer.stderr).startswith(f"error: no task {never} is known to the status view")
    # Sent anyway (the task may be on its way), for tasks enqueued before now only.
    [command] = setup.commands_for(never)
    assert command is not None and command.at_ms <= int(time.time() * 1000)


def test_cancel_of_a_scheduled_task_is_requested_until_it_is_due(setup: Setup) -> None:
    app = make_app(setup.queue, setup.kafka.bootstrap)
    later = app.tasks[(setup.queue, "add")].enqueue({"a": 1, "b": 1}, delay=3600)
    app.flush()
    answer = setup.cancel(later)
    assert answer.returncode == 0, answer.stderr
    assert _one_line(answer.stdout) == (f"cancel requested for {later} (scheduled): workers settle it as "
                                        "cancelled when its turn comes")
    [command] = setup.commands_for(later)
    assert command is not None and command.due_at_ms is not None
    assert command.due_at_ms >= command.at_ms + 3_500_000  # its expiry counts from when it is due


def test_cancel_when_the_status_view_cannot_be_asked_is_sent_unchecked(setup: Setup) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    task_id = unique("unchecked")
    answer = setup.cancel(task_id, "--api", closed)
    assert answer.returncode == 0, answer.stderr
    line = _one_line(answer.stdout)
    assert line.startswith(f"cancel requested for {task_id}, but its status could not be checked: cannot reach "
                           f"the status API at {closed}")
    assert len(setup.commands_for(task_id)) == 1
