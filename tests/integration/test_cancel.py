"""Cancel through a real broker and the CLI: a queued task cancelled while the worker runs, and one
cancelled before any worker started, are settled as `cancelled` and never run; the rest run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import kqueue
from kqueue.core import names
from kqueue.core.status import TaskEvent
from tests.support.kafka import Kafka, unique
from tests.support.worker import consume_process, recorded, wait_for

ROOT = Path(__file__).resolve().parents[2]


def _cancel(bootstrap: str, task_id: str) -> None:
    done = subprocess.run([sys.executable, "-m", "kqueue", "cancel", task_id], capture_output=True, text=True,
                          env={**os.environ, "KQUEUE_BOOTSTRAP_SERVERS": bootstrap}, cwd=ROOT, timeout=60, check=False)
    assert done.returncode == 0 and "cancel requested" in done.stdout, done.stderr


def _events(kafka: Kafka, ids: set[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for msg in kafka.read_all(names.status_topic(), timeout=5):
        value = msg.value()
        if value is not None:
            event = TaskEvent.decode(value)
            if event.task_id in ids:
                out.setdefault(event.task_id, []).append(event.status)
    return out


def test_cancelled_tasks_never_run_whether_cancelled_before_or_while_the_worker_runs(
        kafka: Kafka, tmp_path: Path) -> None:
    queue, group, log = unique("cancel"), unique("g"), tmp_path / "done.log"
    app = kqueue.App("producer", kafka.bootstrap, partitions=2)

    @app.task(queue=queue, name="record")
    def record(payload: dict[str, object]) -> None: ...

    # Before any worker: cancelled while it sits in the topic (a worker must read the cancel first).
    early, early_kept = record.enqueue({"n": 0}, key="a"), record.enqueue({"n": 1}, key="a")
    app.flush()
    _cancel(kafka.bootstrap, early)
    # While the worker runs: queued behind an 8 s task of the same key, cancelled before its turn
    # (the `kqueue cancel` process alone may take seconds to start on a loaded machine).
    slow = record.enqueue({"n": 2, "sleep": 8}, key="b")
    late, late_kept = record.enqueue({"n": 3}, key="b"), record.enqueue({"n": 4}, key="b")
    app.flush()
    worker = consume_process(kafka.bootstrap, queue, group, log)
    try:
        wait_for(lambda: early_kept in recorded(log), 60, "the first uncancelled task")
        assert slow not in recorded(log)  # still running: `late` is queued behind it
        _cancel(kafka.bootstrap, late)
        wait_for(lambda: late_kept in recorded(log), 60, "the task after the cancelled one")
        time.sleep(1.0)  # a wrong run of a cancelled task would show by now
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=90) == 0
    ran = recorded(log)
    assert early not in ran and late not in ran
    assert sorted(ran) == sorted([early_kept, slow, late_kept])  # the others ran, once each
    events = _events(kafka, {early, late})
    assert events == {early: ["cancelled"], late: ["cancelled"]}
    # The carried-out commands are tombstoned, so a restarted worker does not hold them for ever.
    control = [m for m in kafka.read_all(names.control_topic(), timeout=5)
               if m.key() in (early.encode(), late.encode())]
    assert [m.value() is None for m in control].count(True) == 2
