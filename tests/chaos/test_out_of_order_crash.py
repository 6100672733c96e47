"""A later offset fails while an earlier one still runs, then the worker is SIGKILLed: the retry
decided for the later offset is written once in all, never once before the crash and again after."""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import kqueue
from kqueue.core import names
from kqueue.core.headers import header_map
from tests.support.kafka import Kafka, unique
from tests.support.worker import consume_process, recorded, wait_for


def _run_then_kill(kafka: Kafka, queue: str, group: str, log: Path, ready: Callable[[], bool], what: str) -> None:
    """A worker runs until `ready`, then 2 s more (several commit rounds), then is SIGKILLed."""
    victim = consume_process(kafka.bootstrap, queue, group, log, "--concurrency", "4")
    try:
        wait_for(ready, timeout=60, what=what)
        time.sleep(2.0)
        assert victim.poll() is None
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
    finally:
        if victim.poll() is None:
            victim.kill()


def test_a_retry_decided_past_a_running_task_is_not_written_twice_by_a_crash(kafka: Kafka, tmp_path: Path) -> None:
    queue, group, log = unique("ooo"), unique("g"), tmp_path / "done.log"
    app = kqueue.App("producer", kafka.bootstrap, partitions=1)

    @app.task(queue=queue, name="record")
    def record(payload: dict[str, object]) -> None: ...

    slow = record.enqueue({"n": 0, "sleep": 5}, key="a")  # offset 0: still running at the crash
    flaky = record.enqueue({"n": 1, "fail_attempts": 1}, key="b")  # offset 1: attempt 1 fails at once
    marker = record.enqueue({"n": 2}, key="c")  # offset 2: completes, telling us the batch is running
    app.flush()

    # several commit rounds (0.5 s) while offset 0 runs and offset 1's retry is decided
    _run_then_kill(kafka, queue, group, log, lambda: marker in recorded(log), "the victim to run the batch")
    assert slow not in recorded(log)

    survivor = consume_process(kafka.bootstrap, queue, group, log, "--concurrency", "4")
    try:
        wait_for(lambda: {slow, flaky} <= set(recorded(log)), timeout=90, what="every task to complete")
    finally:
        survivor.send_signal(signal.SIGTERM)
        assert survivor.wait(timeout=60) == 0
    tiered = [header_map(m.headers()) for m in kafka.read_all(names.delay_topic(queue, "1s"), timeout=5)]
    decisions = Counter(h[names.H_ID] for h in {(h[names.H_ID], h[names.H_NOT_BEFORE]): h for h in tiered}.values())
    assert decisions == Counter({flaky: 1})  # one retry decision for the flaky task, written once
    assert Counter(recorded(log))[flaky] == 1  # and its retry completed once


def test_work_completed_above_a_running_task_is_not_run_again_after_a_crash(kafka: Kafka, tmp_path: Path) -> None:
    """The commit position waits for offset 0, but the 40 tasks above it that completed are named in
    the commit's metadata: after a SIGKILL the next worker runs offset 0 again and none of the 40."""
    queue, group, log = unique("completed"), unique("g"), tmp_path / "done.log"
    app = kqueue.App("producer", kafka.bootstrap, partitions=1)

    @app.task(queue=queue, name="record")
    def record(payload: dict[str, object]) -> None: ...

    slow = record.enqueue({"n": 0, "sleep": 10}, key="slow")  # offset 0: holds the position until the crash
    quick = [record.enqueue({"n": n}, key=f"k{n}") for n in range(1, 41)]
    app.flush()
    # commit rounds at the same position, naming what completed above it
    _run_then_kill(kafka, queue, group, log, lambda: set(quick) <= set(recorded(log)), "the quick tasks to complete")
    assert slow not in recorded(log)
    survivor = consume_process(kafka.bootstrap, queue, group, log, "--concurrency", "4")
    try:
        wait_for(lambda: slow in recorded(log), timeout=120, what="the slow task to complete")
        after = record.enqueue({"n": 99}, key="after")
        app.flush()
        wait_for(lambda: after in recorded(log), timeout=60, what="a task after it")
    finally:
        survivor.send_signal(signal.SIGTERM)
        assert survivor.wait(timeout=60) == 0
    runs = Counter(recorded(log))
    assert {task: runs[task] for task in quick if runs[task] != 1} == {}  # each ran once in all
    assert runs[slow] == 1
