"""A slow handler holds back no task of another key while a thread (or coroutine slot) is free, also
after cheap work has taught the executor to wake one thread per CHEAP_RUN queued tasks."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import kqueue
from kqueue.worker.executor import CHEAP_ITEM_SECONDS, Executor
from kqueue.worker.runner import Runner
from kqueue.worker.work import WorkItem

SLOW = -1  # the `n` of the task that runs long
# Seconds by which a cheap task of a free key must have started. The slow task runs until the test
# ends, so a cheap one held behind it would start far later; the margin is for a loaded machine
# (51.8 ms seen under a load average of 10 on two cores).
LATE = 0.5
CHEAP_TASKS = 50
WARM_TASKS = 3000


class Bench:
    """An executor with 8 threads, a sync and an async task that record when each `n` started; the task
    with n == SLOW waits for `release` (5 s at most)."""

    def __init__(self) -> None:
        self.app = kqueue.App("idle", "127.0.0.1:1")
        self.executor = Executor(8, Runner())
        self.release = threading.Event()
        self.started: dict[int, float] = {}
        self.outcomes: list[int] = []
        self._offset = 0

        @self.app.task(queue="q")
        def job(payload: dict[str, Any]) -> None:
            self.started[payload["n"]] = time.monotonic()
            if payload["n"] == SLOW:
                self.release.wait(5)

        @self.app.task(queue="q")
        async def async_job(payload: dict[str, Any]) -> None:
            self.started[payload["n"]] = time.monotonic()
            if payload["n"] == SLOW:
                await asyncio.to_thread(self.release.wait, 5)

    def item(self, name: str, n: int, key: str) -> WorkItem:
        self._offset += 1
        item = WorkItem("q", 0, self._offset, key.encode(), b"{}", {}, "q")
        item.task = self.app.tasks[("q", name)]
        item.payload = {"n": n}
        return item

    def collect(self) -> None:
        self.outcomes.extend(item.payload["n"] for item, _ in self.executor.drain())

    def wait_until(self, condition: Any, what: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.002)
            self.collect()

    def warm_up(self, name: str) -> None:
        """Cheap tasks of many keys until the executor has learnt its handlers are cheap (on a busy
        machine, a thread preempted in a handler makes one look slower than it is)."""
        for _round in range(10):
            self.executor.submit([self.item(name, 1_000_000 + i, f"warm-{i % 300}") for i in range(WARM_TASKS)])
            self.wait_until(lambda: len(self.outcomes) == WARM_TASKS, "the warm-up")
            self.outcomes.clear()
            self.started.clear()
            per_item_ms = self.executor.state()["ms_per_item"]
            if per_item_ms <= CHEAP_ITEM_SECONDS * 1000:
                return
        raise AssertionError(f"not in cheap mode after the warm-up: {per_item_ms} ms per task")


@pytest.fixture()
def bench() -> Iterator[Bench]:
    # A full collection of the test process stops every thread for tens of ms: no scheduling delay
    # of the executor's (a worker runs with its heap settled, kqueue/worker/heap.py).
    gc.collect()
    gc.disable()
    bench = Bench()
    try:
        yield bench
    finally:
        bench.release.set()
        deadline = time.monotonic() + 5
        while bench.executor.running() and time.monotonic() < deadline:  # the slow ones end
            time.sleep(0.01)
        bench.executor.stop()
        gc.enable()


def _check_cheap_ones_started_soon(bench: Bench, submitted_at: float) -> None:
    bench.wait_until(lambda: set(range(CHEAP_TASKS)) <= set(bench.outcomes), "the cheap tasks")
    late = {n: round((bench.started[n] - submitted_at) * 1000, 1) for n in range(CHEAP_TASKS)
            if bench.started[n] - submitted_at > LATE}
    assert not late, f"cheap tasks started late (ms after submit): {late}"
    assert SLOW not in bench.outcomes  # the slow one still runs: every cheap one ran beside it


@pytest.mark.parametrize("name", ["job", "async_job"])
def test_cheap_tasks_submitted_with_a_slow_one_start_at_once(bench: Bench, name: str) -> None:
    bench.warm_up(name)
    # One submit (one poll batch): a cheap-mode take would hand the slow key and the others to one runner.
    batch = [bench.item(name, SLOW, "A")] + [bench.item(name, n, f"k{n}") for n in range(CHEAP_TASKS)]
    submitted_at = time.monotonic()
    bench.executor.submit(batch)
    _check_cheap_ones_started_soon(bench, submitted_at)


@pytest.mark.parametrize("name", ["job", "async_job"])
def test_cheap_tasks_submitted_while_a_slow_one_runs_start_at_once(bench: Bench, name: str) -> None:
    bench.warm_up(name)
    bench.executor.submit([bench.item(name, SLOW, "A")])
    bench.wait_until(lambda: SLOW in bench.started, "the slow task to start")
    # A later submit: the thread on the slow task must not count as one serving the queue.
    submitted_at = time.monotonic()
    bench.executor.submit([bench.item(name, n, f"k{n}") for n in range(CHEAP_TASKS)])
    _check_cheap_ones_started_soon(bench, submitted_at)


def test_one_slow_task_after_another_holds_back_nothing(bench: Bench) -> None:
    """The second slow task lands on the runner that took the cheap ones: its other keys still start."""
    bench.warm_up("job")
    bench.executor.submit([bench.item("job", SLOW, "A")])
    bench.wait_until(lambda: SLOW in bench.started, "the first slow task to start")
    second = [bench.item("job", SLOW, "B")] + [bench.item("job", n, f"k{n}") for n in range(CHEAP_TASKS)]
    submitted_at = time.monotonic()
    bench.executor.submit(second)
    _check_cheap_ones_started_soon(bench, submitted_at)
