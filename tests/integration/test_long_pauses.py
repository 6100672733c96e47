"""Long waits a worker must outlast: a shutdown drain longer than a transaction may stay open, and
a process stopped past its group session (a GC pause, SIGSTOP, a slow node)."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path

import kqueue
from kqueue.core import names
from kqueue.core.headers import header_map
from kqueue.transport.inspect import group_split, topic_depths
from tests.support.kafka import Kafka, unique
from tests.support.worker import consume_process, recorded, wait_for


def _producer(bootstrap: str, queue: str) -> kqueue.TaskDef:
    app = kqueue.App("producer", bootstrap, partitions=2)

    @app.task(queue=queue, name="record")
    def record(payload: dict[str, object]) -> None: ...

    return record


def test_a_drain_longer_than_the_transaction_timeout_exits_cleanly(kafka: Kafka, tmp_path: Path) -> None:
    """A retry decided 2 s into a 14 s drain: the transaction timeout is 10 s, so a transaction opened
    for it and held through the drain would be aborted by the coordinator."""
    queue, group, log = unique("drain"), unique("g"), tmp_path / "done.log"
    record = _producer(kafka.bootstrap, queue)
    slow = record.enqueue({"n": 0, "sleep": 14}, key="a")
    flaky = record.enqueue({"n": 1, "sleep": 2, "fail_attempts": 1}, key="b")
    marker = record.enqueue({"n": 2}, key="c")
    record.app.flush()

    worker = consume_process(kafka.bootstrap, queue, group, log, "--grace", "30")
    wait_for(lambda: marker in recorded(log), timeout=60, what="the batch to run")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 0
    assert Counter(recorded(log)) == Counter({slow: 1, marker: 1})  # the drain let the slow one finish

    survivor = consume_process(kafka.bootstrap, queue, group, log)
    try:
        wait_for(lambda: flaky in recorded(log), timeout=60, what="the retry to run")
        time.sleep(1.5)  # anything re-run from an uncommitted drain would show up now
    finally:
        survivor.send_signal(signal.SIGTERM)
        assert survivor.wait(timeout=60) == 0
    assert Counter(recorded(log)) == Counter({slow: 1, marker: 1, flaky: 1})
    tiered = {header_map(m.headers())[names.H_ID] for m in kafka.read_all(names.delay_topic(queue, "1s"), timeout=5)}
    assert tiered == {flaky}


def test_a_worker_stopped_past_its_session_rejoins_and_goes_on(kafka: Kafka, tmp_path: Path) -> None:
    queue, group, log = unique("sigstop"), unique("g"), tmp_path / "done.log"
    record = _producer(kafka.bootstrap, queue)
    before = [record.enqueue({"n": i}, key=f"k{i}") for i in range(20)]
    record.app.flush()
    worker = consume_process(kafka.bootstrap, queue, group, log)
    try:
        wait_for(lambda: set(before) <= set(recorded(log)), timeout=60, what="the first tasks")
        # committed (every 0.5 s; a loaded machine takes longer): completions not yet committed
        # would rightly re-run
        wait_for(lambda: all(d.lag == 0 for d in topic_depths(kafka.bootstrap, [queue], group)),
                 timeout=30, what="the first tasks to be committed")
        os.kill(worker.pid, signal.SIGSTOP)
        time.sleep(13)  # past the group session (10 s on the dev broker): the group drops it, its partitions are lost
        os.kill(worker.pid, signal.SIGCONT)
        after = [record.enqueue({"n": 100 + i}, key=f"k{i}") for i in range(20)]
        record.app.flush()
        wait_for(lambda: set(after) <= set(recorded(log)), timeout=90, what="tasks enqueued after the pause")
        assert worker.poll() is None  # the same process: it rejoined, it did not exit
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 0
    assert Counter(recorded(log)) == Counter({task_id: 1 for task_id in before + after})


def test_what_did_not_start_within_the_grace_is_left_for_the_next_worker(kafka: Kafka, tmp_path: Path) -> None:
    queue, group, log = unique("grace"), unique("g"), tmp_path / "done.log"
    record = _producer(kafka.bootstrap, queue)
    marker = record.enqueue({"n": 0}, key="m")
    line = [record.enqueue({"n": i, "sleep": 2}, key="same") for i in range(1, 6)]  # 10 s of work, one key
    record.app.flush()
    worker = consume_process(kafka.bootstrap, queue, group, log, "--grace", "1")
    wait_for(lambda: marker in recorded(log), timeout=60, what="the batch to start")
    stopped_at = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0
    assert time.monotonic() - stopped_at < 8  # the grace, then a commit and leaving the group
    assert set(recorded(log)) <= {marker, line[0]}  # nothing after the first one started

    survivor = consume_process(kafka.bootstrap, queue, group, log)
    try:
        wait_for(lambda: set(line) <= set(recorded(log)), timeout=60, what="the rest of the line")
    finally:
        survivor.send_signal(signal.SIGTERM)
        assert survivor.wait(timeout=60) == 0
    counts = Counter(recorded(log))
    assert all(counts[task_id] == 1 for task_id in line[1:]) and counts[marker] == 1


def test_a_stopped_worker_starts_none_of_the_work_it_lost_and_keeps_going(kafka: Kafka, tmp_path: Path) -> None:
    """Two workers; one is stopped (SIGSTOP) past its session while it has fetched work queued. The
    other takes its partitions over and runs that work. The stopped one, resumed, must not start
    what it lost: only what was already running when it stopped may finish (its result discarded),
    so tasks both ran are at most its concurrency. Then it rejoins and keeps going."""
    queue, group, log = unique("fenced"), unique("g"), tmp_path / "done.log"
    app = kqueue.App("producer", kafka.bootstrap, partitions=6)

    @app.task(queue=queue, name="record")
    def record(payload: dict[str, object]) -> None: ...

    record.app.ensure_queue(queue)
    stopped = consume_process(kafka.bootstrap, queue, group, log, "--concurrency", "4")
    other = consume_process(kafka.bootstrap, queue, group, log, "--concurrency", "4")
    try:
        wait_for(lambda: group_split(kafka.bootstrap, group) == (2, 2), what="both workers to hold partitions")
        ids = [record.enqueue({"n": n, "sleep": 0.05}, key=f"k{n % 60}") for n in range(1500)]
        app.flush()
        wait_for(lambda: len(recorded(log)) >= 200, timeout=90, what="both workers to complete tasks")
        stopped.send_signal(signal.SIGSTOP)
        time.sleep(15)  # past the 10 s session: the other worker takes over
        resumed_at = len(log.read_text().splitlines())
        stopped.send_signal(signal.SIGCONT)
        wait_for(lambda: set(ids) <= set(recorded(log)), timeout=180, what="every task to complete")
        assert stopped.poll() is None and other.poll() is None  # both still running
        more = [record.enqueue({"n": n}, key=f"k{n % 60}") for n in range(1500, 1600)]
        app.flush()
        wait_for(lambda: set(more) <= set(recorded(log)), timeout=90, what="tasks after the pause")
    finally:
        for worker in (stopped, other):
            worker.send_signal(signal.SIGCONT)
            worker.send_signal(signal.SIGTERM)
        codes = [worker.wait(timeout=90) for worker in (stopped, other)]
    assert codes == [0, 0]
    lines = [line.split() for line in log.read_text().splitlines()]
    by_other = {task for task, pid, _ in lines if int(pid) == other.pid}
    late = [task for task, pid, _ in lines[resumed_at:] if int(pid) == stopped.pid and task in set(ids)]
    twice = [task for task in late if task in by_other]
    print(f"after SIGCONT the stopped worker completed {len(late)} task(s) of the first batch, "
          f"{len(twice)} also run by the other worker")
    # At most what was running when it stopped (4, its concurrency): after a freeze its runners
    # start nothing until the poll loop has heard of the loss, and nothing lost is started after.
    assert len(twice) <= 4, twice
