"""Sync handlers that hang past their timeout= leave threads Python cannot stop (issue 9, item 6).
Past --max-overrun-threads the worker drains, says why and restarts its own process (same pid),
so the thread count stays bounded and every task still settles."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import kqueue
from kqueue.core import names
from kqueue.core.headers import header_map
from tests.support.kafka import Kafka, unique
from tests.support.worker import wait_for

TASKS = 40
CONCURRENCY = 4
BOUND = 3


def threads_of(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def test_leaked_handler_threads_restart_the_worker_process_and_every_task_settles(kafka: Kafka) -> None:
    queue, group = unique("hang"), unique("g")
    app = kqueue.App("hanging", kafka.bootstrap, partitions=2)

    @app.task(queue=queue, timeout=0.3, max_attempts=1)
    def hang(payload: dict[str, Any]) -> None:
        return None  # the worker runs tests/apps/hanging.py's handler, which hangs

    ids = {hang.enqueue({"n": n}, key=f"k{n}") for n in range(TASKS)}
    app.flush()
    env = {**os.environ, "KQUEUE_BOOTSTRAP_SERVERS": kafka.bootstrap, "KQ_TEST_QUEUE": queue}
    worker = subprocess.Popen(
        [sys.executable, "-m", "kqueue", "consume", "--app", "tests.apps.hanging:app", "--group", group,
         "--concurrency", str(CONCURRENCY), "--max-overrun-threads", str(BOUND), "--log-level", "WARNING"],
        env=env, cwd=Path(__file__).resolve().parents[2], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    most_threads = 0
    letters: list[Any] = []

    def all_dead_lettered() -> bool:
        nonlocal most_threads, letters
        assert worker.poll() is None, "the worker process exited instead of restarting itself"
        most_threads = max(most_threads, threads_of(worker.pid))
        letters = kafka.read_all(names.dlq_topic(queue), timeout=0.5)
        return len(letters) >= TASKS

    try:
        wait_for(all_dead_lettered, timeout=240, what=f"all {TASKS} hanging tasks to be dead-lettered")
        time.sleep(1)
        letters = kafka.read_all(names.dlq_topic(queue), expected=TASKS)
    finally:
        worker.send_signal(signal.SIGTERM)
        out, err = worker.communicate(timeout=60)
    stdout, stderr = " ".join(out.decode().split()), err.decode()  # the console may wrap lines
    assert worker.returncode == 0, stderr[-2000:]
    headers = [header_map(m.headers()) for m in letters]
    assert sorted(h[names.H_ID] for h in headers) == sorted(ids)  # each once: none lost, none twice
    assert {h[names.H_ERROR_TYPE] for h in headers} == {"TimeoutError"}
    restarts = stdout.count("restarting: ")
    assert restarts >= 2, stdout[-2000:]
    assert "sync handler threads are still running past their time limit (at most 3)" in stdout, stdout[-3000:]
    assert "draining first" in stderr
    # An idle worker has 13-20 threads here. Without the bound every hanging attempt keeps its
    # thread (40 more); with it, at most the bound plus one round of the concurrency are left.
    assert most_threads <= 20 + BOUND + 2 * CONCURRENCY, most_threads
