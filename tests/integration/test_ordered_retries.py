"""Ordered retries (README, "Ordered retries"): with `ordered=True` a key's later tasks wait, parked,
until its retry succeeds or is dead-lettered, then run in their order; other keys never wait."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import kqueue
from kqueue.control.dlq import dead_letters
from kqueue.core import names
from tests.support.kafka import Kafka, unique
from tests.support.worker import ThreadedWorker, wait_for

FAILING = [f"failing-{i}" for i in range(8)]
HEALTHY = [f"healthy-{i}" for i in range(8)]
LATER = 20  # later tasks per key


class Log:
    """What the handler saw, in the order it saw it (per key), and when."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.runs: dict[str, list[tuple[int, int, float]]] = {}  # key -> (seq, attempt, when)
        self.failed: set[tuple[str, int, int]] = set()  # (key, seq, attempt)

    def add(self, key: str, seq: int, attempt: int, fails: bool = False) -> None:
        with self.lock:
            self.runs.setdefault(key, []).append((seq, attempt, time.monotonic()))
            if fails:
                self.failed.add((key, seq, attempt))

    def succeeded(self, key: str) -> list[int]:
        """The seqs of the key's runs that did not fail, in the order they ran."""
        return [seq for seq, attempt, _ in self.runs.get(key, []) if (key, seq, attempt) not in self.failed]

    def count(self) -> int:
        with self.lock:
            return sum(len(runs) for runs in self.runs.values())


def _enqueue_interleaved(task: kqueue.TaskDef, keys: list[str], per_key: int) -> None:
    for seq in range(per_key):
        for key in keys:
            task.enqueue({"key": key, "seq": seq}, key=key)
    task.app.flush()


def test_a_keys_later_tasks_wait_for_its_retry_and_run_in_enqueue_order(kafka: Kafka) -> None:
    app = kqueue.App("ordered", kafka.bootstrap, partitions=3)
    queue = unique("ordered")
    log = Log()

    @app.task(queue=queue, ordered=True, backoff=kqueue.RetryPolicy(base=2.0, jitter=0.0))
    def apply(payload: dict[str, Any], ctx: kqueue.TaskContext) -> None:
        fails = payload["key"] in FAILING and payload["seq"] == 0 and ctx.attempt == 1
        log.add(payload["key"], payload["seq"], ctx.attempt, fails)
        if fails:
            raise RuntimeError("the first change of this object fails once")

    _enqueue_interleaved(apply, FAILING + HEALTHY, LATER + 1)
    total = len(FAILING + HEALTHY) * (LATER + 1) + len(FAILING)  # every task once, plus the failed attempts
    with ThreadedWorker(app, group=unique("g"), concurrency=8) as worker:
        wait_for(lambda: log.count() == total, timeout=90, what="every task and retry")
        wait_for(lambda: worker.worker.counts.completed == total - len(FAILING), timeout=30, what="completions")
        stats = worker.stop()
    for key in FAILING + HEALTHY:
        assert log.succeeded(key) == list(range(LATER + 1)), key
    # Each failing key's later tasks waited parked (durably, settled), nothing else did.
    assert stats.parked == len(FAILING) * LATER
    assert stats.retried == len(FAILING)
    assert log.count() == total  # nothing ran twice
    # Other keys did not wait: every healthy key was done before the first retry (2 s later) ran.
    first_retry = min(when for key in FAILING for seq, attempt, when in log.runs[key] if attempt == 2)
    last_healthy = max(when for key in HEALTHY for _, _, when in log.runs[key])
    assert last_healthy < first_retry


def test_parked_tasks_survive_a_new_owner(kafka: Kafka) -> None:
    """The block and its parked tasks are in Kafka: a worker that takes over releases them in order."""
    app = kqueue.App("ordered", kafka.bootstrap, partitions=1)
    queue = unique("ordered-handover")
    log = Log()

    @app.task(queue=queue, ordered=True, backoff=kqueue.RetryPolicy(base=3.0, jitter=0.0))
    def apply(payload: dict[str, Any], ctx: kqueue.TaskContext) -> None:
        log.add(payload["key"], payload["seq"], ctx.attempt, payload["seq"] == 0 and ctx.attempt == 1)
        if payload["seq"] == 0 and ctx.attempt == 1:
            raise RuntimeError("fails once")

    _enqueue_interleaved(apply, ["k"], 6)
    group = unique("g")
    with ThreadedWorker(app, group=group, concurrency=4) as first:
        wait_for(lambda: first.worker.counts.parked == 5, timeout=30, what="the later tasks parked")
        first.stop()  # before the retry is due (3 s): the next worker finds the key blocked
    assert log.succeeded("k") == []
    with ThreadedWorker(app, group=group, concurrency=4) as second:
        wait_for(lambda: len(log.succeeded("k")) == 6, timeout=60, what="the retry and the parked tasks")
        time.sleep(1.0)  # nothing more may run (a parked task released twice would show here)
        second.stop()
    assert log.succeeded("k") == [0, 1, 2, 3, 4, 5]


def test_after_a_dead_letter_the_rest_go_on_by_default(kafka: Kafka) -> None:
    app = kqueue.App("ordered", kafka.bootstrap, partitions=1, delay_tiers=["1s"])
    queue = unique("ordered-goon")
    log = Log()

    @app.task(queue=queue, ordered=True, max_attempts=2, backoff=kqueue.RetryPolicy(base=1.0, jitter=0.0))
    def apply(payload: dict[str, Any], ctx: kqueue.TaskContext) -> None:
        log.add(payload["key"], payload["seq"], ctx.attempt, payload["seq"] == 0)
        if payload["seq"] == 0:
            raise RuntimeError("never works")

    _enqueue_interleaved(apply, ["k"], 5)
    with ThreadedWorker(app, group=unique("g"), concurrency=4) as worker:
        wait_for(lambda: worker.worker.counts.completed == 4, timeout=60, what="the rest")
        stats = worker.stop()
    assert [(seq, attempt) for seq, attempt, _ in log.runs["k"]] == [(0, 1), (0, 2), (1, 1), (2, 1), (3, 1), (4, 1)]
    assert stats.dead_lettered == 1 and stats.parked == 4


def test_with_follow_the_parked_tasks_follow_their_blocker_to_the_dlq(kafka: Kafka) -> None:
    app = kqueue.App("ordered", kafka.bootstrap, partitions=1, delay_tiers=["1s"])
    queue = unique("ordered-follow")
    log = Log()

    @app.task(queue=queue, ordered="follow", max_attempts=2, backoff=kqueue.RetryPolicy(base=1.0, jitter=0.0))
    def apply(payload: dict[str, Any], ctx: kqueue.TaskContext) -> None:
        fails = payload["key"] == "doomed" and payload["seq"] == 0
        log.add(payload["key"], payload["seq"], ctx.attempt, fails)
        if fails:
            raise RuntimeError("never works")

    _enqueue_interleaved(apply, ["doomed", "fine"], 5)
    with ThreadedWorker(app, group=unique("g"), concurrency=4) as worker:
        wait_for(lambda: worker.worker.counts.dead_lettered == 5, timeout=60, what="the key's dead letters")
        stats = worker.stop()
    assert [(seq, attempt) for seq, attempt, _ in log.runs["doomed"]] == [(0, 1), (0, 2)]
    assert log.succeeded("fine") == [0, 1, 2, 3, 4]
    letters = dead_letters(kafka.bootstrap, queue)
    by_error = sorted((json.loads(letter.value or b"{}")["seq"], letter.headers[names.H_ERROR_TYPE])
                      for letter in letters)
    assert by_error == [(0, "RuntimeError")] + [(seq, "FollowsDeadLetter") for seq in range(1, 5)]
    assert stats.completed == 5


def _ordered_worker(bootstrap: str, queue: str, group: str, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "KQUEUE_BOOTSTRAP_SERVERS": bootstrap, "KQ_TEST_QUEUE": queue, "KQ_TEST_LOG": str(log)}
    return subprocess.Popen(
        [sys.executable, "-m", "kqueue", "consume", "--app", "tests.apps.ordered:app", "--group", group,
         "--log-level", "WARNING"], env=env, cwd=Path(__file__).resolve().parents[2])


def _runs(log: Path) -> dict[str, list[int]]:
    runs: dict[str, list[int]] = {}
    if log.exists():
        for line in log.read_text().splitlines():
            key, seq, _pid = line.split()
            runs.setdefault(key, []).append(int(seq))
    return runs


@pytest.mark.slow
def test_order_holds_when_workers_are_killed_mid_release(kafka: Kafka, tmp_path: Path) -> None:
    """SIGKILL twice while keys release their parked tasks: every key's tasks still run in enqueue
    order, none is lost; a task runs again only right after itself (at least once, never reordered)."""
    from tests.apps import ordered

    queue = unique("ordered-kill")
    app = kqueue.App("ordered-app", kafka.bootstrap, partitions=2)
    task = app.task(queue=queue, name="apply", ordered=True)(ordered.apply.fn)
    keys, per_key = [f"k{i}" for i in range(4)], 30
    for seq in range(per_key):
        for key in keys:
            task.enqueue({"key": key, "seq": seq, "sleep": 0.03}, key=key)
    app.flush()
    log, group = tmp_path / "runs.log", unique("g")
    for kill_after in (20, 60):  # successful runs in the log when the worker is killed
        worker = _ordered_worker(kafka.bootstrap, queue, group, log)
        try:
            wait_for(lambda n=kill_after: sum(map(len, _runs(log).values())) >= n, timeout=90,  # type: ignore[misc]
                     what=f"{kill_after} runs")
        finally:
            worker.send_signal(signal.SIGKILL)
            worker.wait(10)
    last = _ordered_worker(kafka.bootstrap, queue, group, log)
    try:
        wait_for(lambda: all(set(_runs(log).get(k, [])) == set(range(per_key)) for k in keys), timeout=120,
                 what="every key's tasks")
        time.sleep(2.0)  # a parked task released twice would run again here
    finally:
        last.send_signal(signal.SIGTERM)
        last.wait(30)
    for key, seqs in _runs(log).items():
        collapsed = [s for i, s in enumerate(seqs) if i == 0 or seqs[i - 1] != s]
        assert collapsed == list(range(per_key)), (key, seqs)


def test_a_parked_task_reads_parked_until_its_copy_has_run(kafka: Kafka, tmp_path: Path) -> None:
    """The commit passes a parked task: the status view must not take that for a completion."""
    from tests.support.api import ApiProcess

    queue = unique("ordered-status")
    app = kqueue.App("ordered-app", kafka.bootstrap, partitions=1)
    release = threading.Event()

    @app.task(queue=queue, name="apply", ordered=True, backoff=kqueue.RetryPolicy(base=1.0, jitter=0.0))
    def apply(payload: dict[str, Any], ctx: kqueue.TaskContext) -> None:
        if payload["seq"] == 0 and not release.is_set():
            raise RuntimeError("fails until released")

    ids = [apply.enqueue({"key": "k", "seq": seq}, key="k") for seq in range(3)]
    app.flush()
    with ApiProcess(kafka.bootstrap, queue, tmp_path / "view.db", app="tests.apps.ordered:app") as api, \
            ThreadedWorker(app, group=unique("g"), concurrency=4) as worker:
        def status(task_id: str) -> str:
            code, body = api.request("GET", f"/api/v1/tasks/{task_id}")
            return str(body["status"]) if code == 200 else f"http {code}"

        wait_for(lambda: worker.worker.counts.parked == 2, timeout=30, what="the later tasks parked")
        wait_for(lambda: status(ids[2]) == "parked", timeout=30, what="the view to show parked")
        assert status(ids[1]) == "parked" and status(ids[0]) in ("retrying", "queued", "processing")
        release.set()
        wait_for(lambda: [status(i) for i in ids] == ["completed"] * 3, timeout=60, what="all completed")
