"""`kqueue consume --commit-interval SECONDS`, started as a user would: the worker commits at that
cadence while tasks complete, and a value that is not a positive number is a one-line usage error."""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
from itertools import pairwise
from pathlib import Path

import pytest

import kqueue
from tests.support.kafka import Kafka, unique
from tests.support.worker import wait_for

ROOT = Path(__file__).resolve().parents[2]
TASKS = 30
NAP = 0.08  # seconds per task, one at a time: completions go on for about 2.4 s


def _commits(path: Path) -> list[tuple[float, int]]:
    """When each commit landed (wall time) and the queue's committed offset it wrote, in order."""
    lines = path.read_text().splitlines() if path.exists() else []
    return [(float(at), int(offset)) for at, offset in (line.split() for line in lines)]


def _consume(bootstrap: str, queue: str, commits: Path, *extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, "KQUEUE_BOOTSTRAP_SERVERS": bootstrap, "KQ_TEST_QUEUE": queue, "KQ_TEST_COMMITS": str(commits)}
    return subprocess.Popen([sys.executable, "-m", "kqueue", "consume", "--app", "tests.apps.committing:app",
                             "--group", unique("interval-g"), "--log-level", "WARNING", *extra],
                            env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _enqueue_naps(bootstrap: str, queue: str) -> None:
    app = kqueue.App("interval-producer", bootstrap, partitions=1)
    task = app.task(queue=queue, name="nap")(lambda payload: None)
    app.ensure_queue(queue)
    for n in range(TASKS):
        task.enqueue({"n": n, "sleep": NAP})
    app.flush()


@pytest.mark.parametrize("interval", [0.1, 1.0])
def test_consume_commits_at_the_interval_given(kafka: Kafka, tmp_path: Path, interval: float) -> None:
    queue, commits = unique("interval"), tmp_path / "commits.log"
    proc = _consume(kafka.bootstrap, queue, commits, "--concurrency", "1", "--commit-interval", str(interval))
    try:
        _enqueue_naps(kafka.bootstrap, queue)
        wait_for(lambda: proc.poll() is not None or any(o == TASKS for _, o in _commits(commits)), 60,
                 "the commit of the last task")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    # The commits while tasks completed, up to the one of the last task (the drain's adds nothing).
    landed = _commits(commits)
    times = [at for at, _ in landed[: [o for _, o in landed].index(TASKS) + 1]]
    gaps = [b - a for a, b in pairwise(times)]
    assert gaps, times
    if interval < 0.5:
        # While tasks complete every 0.08 s, commits follow each other at about the interval, well below
        # the 0.5 s the worker used to wait between commits.
        assert statistics.median(gaps) < 0.4, gaps
        assert len(times) >= 5, times
    else:
        # Never sooner than the interval (a landing can come a commit's round trip early or late).
        assert min(gaps) >= interval - 0.2, gaps


@pytest.mark.parametrize("value", ["0", "-1", "abc", "nan", "inf", ""])
def test_a_commit_interval_that_is_not_a_positive_number_is_one_line_and_exit_2(tmp_path: Path, value: str) -> None:
    # No broker needed: the value is refused before the app loads or anything connects.
    result = subprocess.run([sys.executable, "-m", "kqueue", "consume", "--app", "tests.apps.committing:app",
                             "--group", "g", "--commit-interval", value],
                            env={**os.environ, "KQUEUE_BOOTSTRAP_SERVERS": "127.0.0.1:1"}, cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "--commit-interval" in result.stderr and "Traceback" not in result.stderr
