"""`kqueue consume` with its default flags is fast by default: it writes no line per completed task,
one INFO summary line for a drain instead."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import kqueue
from tests.support.kafka import Kafka, unique
from tests.support.worker import recorded, wait_for

ROOT = Path(__file__).resolve().parents[2]
SUMMARY = re.compile(r" INFO kqueue\.summary \[\d+\] settled in the last [\d.]+s: (\d+) completed \([\d.,]+/s\), "
                     r"(\d+) retried, (\d+) dead-lettered$")


def test_default_consume_writes_a_summary_line_not_a_line_per_task(kafka: Kafka, tmp_path: Path) -> None:
    queue, done, err = unique("defaults"), tmp_path / "done.log", tmp_path / "stderr.log"
    app = kqueue.App("defaults-producer", kafka.bootstrap)
    task = app.task(queue=queue, name="record")(lambda payload: None)
    app.ensure_queue(queue)
    for n in range(20):
        task.enqueue({"n": n}, key=f"k{n % 5}")
    app.flush()

    env = {**os.environ, "KQUEUE_BOOTSTRAP_SERVERS": kafka.bootstrap, "KQ_TEST_QUEUE": queue, "KQ_TEST_LOG": str(done),
           # Short enough for a test, longer than the drain: the drain's first window holds all of it.
           "KQUEUE_SUMMARY_INTERVAL": "5"}
    with err.open("w") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "kqueue", "consume", "--app", "tests.apps.recorder:app",
                                 "--group", unique("defaults-g")],  # no --log-level, no --log-format: the defaults
                                env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        wait_for(lambda: len(set(recorded(done))) == 20, 60, "the 20 tasks to complete")
        wait_for(lambda: any(SUMMARY.search(line) for line in err.read_text().splitlines()), 15,
                 "the summary line")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    assert proc.returncode == 0, err.read_text()

    lines = err.read_text().splitlines()
    summaries = [m.groups() for line in lines if (m := SUMMARY.search(line))]
    assert summaries == [("20", "0", "0")], lines  # one line for the drain; none while idle, none at the stop
    assert not [line for line in lines if "kqueue.task" in line], lines  # no line per task
