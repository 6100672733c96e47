"""A queue-wide rate limit through a real broker, as an operator sets it (issue 20 item 3, per queue).

Two `kqueue consume` workers drain a backlog of two task types (one with a type limit of its own,
well above the queue's) while `kqueue queue limit Q 50/s` holds: they start both types together at
50/s, and they started after the limit was set (it is durable). `kqueue queue limit Q 100/s` moves
the running workers to 100/s within two seconds; `--clear` lets the rest drain at full speed.
A worker started after the limit obeys it from its first task. Bad rates and unknown queues get one
line and exit 2.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import kqueue
from kqueue.control.limits import read_limits
from kqueue.core.ratelimit import Rate
from tests.integration.test_rate_limits import consume, per_second, runs, sleep_until, stop
from tests.support.kafka import Kafka, unique
from tests.support.worker import ThreadedWorker, wait_for

ROOT = Path(__file__).resolve().parents[2]
TASKS = 4_000


def cli(bootstrap: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kqueue", *args], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "KQUEUE_BOOTSTRAP_SERVERS": bootstrap}, timeout=60, check=False)


def backlog(bootstrap: str, queue: str, tasks: int) -> None:
    producer = kqueue.App("qlimit-producer", bootstrap, partitions=6)
    limited = producer.task(queue=queue, name="limited")(lambda payload: None)
    free = producer.task(queue=queue, name="free")(lambda payload: None)
    producer.ensure_queue(queue)
    for n in range(tasks):
        (limited if n % 2 else free).enqueue({}, key=f"k{n}")
    producer.flush()


@pytest.mark.slow
def test_the_cli_limit_holds_the_group_follows_a_change_and_lifts_on_clear(kafka: Kafka, tmp_path: Path) -> None:
    queue, group = unique("qlimit"), unique("qlimit-g")
    log, err = tmp_path / "runs.log", tmp_path / "stderr.log"
    backlog(kafka.bootstrap, queue, TASKS)
    done = cli(kafka.bootstrap, "queue", "limit", queue, "50/s")
    assert done.returncode == 0 and "limited to 50/s" in done.stdout, done.stdout + done.stderr
    # `limited` has a type limit of its own (1000/s): a task needs a token of both, the queue's binds.
    workers = [consume(kafka.bootstrap, queue, group, log, err, "1000/s") for _ in range(2)]
    try:
        wait_for(lambda: len({pid for _, _, pid in runs(log)}) == 2, 90, "both workers running tasks")
        start = time.monotonic_ns() + 1_000_000_000
        sleep_until(start + 10_000_000_000)
        changed = cli(kafka.bootstrap, "queue", "limit", queue, "100/s")
        assert changed.returncode == 0, changed.stderr
        faster = time.monotonic_ns() + 2_000_000_000  # the workers retune within two seconds
        sleep_until(faster + 10_000_000_000)
        cleared = cli(kafka.bootstrap, "queue", "limit", queue, "--clear")
        assert cleared.returncode == 0 and "no queue-wide rate limit" in cleared.stdout, cleared.stderr
        lifted = time.monotonic_ns()
        wait_for(lambda: len(runs(log)) >= TASKS, 60, "the backlog drained")
    finally:
        stop(workers)
    assert [w.returncode for w in workers] == [0, 0], err.read_text()
    times = sorted(ns for _, ns, _ in runs(log))
    slow_phase, fast_phase = per_second(times, start, 10), per_second(times, faster, 10)
    after = [ns for ns in times if ns >= lifted]
    drain_rate = len(after) / ((after[-1] - lifted) / 1e9)
    kinds = {kind for kind, ns, _ in runs(log) if start <= ns < start + 10_000_000_000}
    print(f"\n50/s phase per second: {slow_phase} mean {sum(slow_phase) / 10:.1f}/s"
          f"\n100/s phase per second: {fast_phase} mean {sum(fast_phase) / 10:.1f}/s"
          f"\ncleared: {len(after)} tasks drained at {drain_rate:.0f}/s")
    assert kinds == {"limited", "free"}  # both types count against the one limit
    assert abs(sum(slow_phase) / 10 - 50) <= 5, slow_phase
    assert abs(sum(fast_phase) / 10 - 100) <= 10, fast_phase
    assert len(after) > 500 and drain_rate > 300, (len(after), drain_rate)


def test_a_worker_started_after_the_limit_was_set_obeys_it(kafka: Kafka) -> None:
    queue, group = unique("qlimit-late"), unique("qlimit-late-g")
    app = kqueue.App("qlimit-late", kafka.bootstrap, partitions=3)
    started: list[float] = []
    task = app.task(queue=queue, name="step")(lambda payload: started.append(time.monotonic()))
    app.ensure_queue(queue)
    state = app.limit(queue, "40/s")
    assert state.as_json()["rate"] == "40/s" and state.limit is not None
    assert read_limits(kafka.bootstrap)[queue].rate == Rate(40, 1)  # durable: read back from the topic
    for n in range(240):
        task.enqueue({}, key=f"k{n}")
    app.flush()
    with ThreadedWorker(app, group=group, concurrency=8):
        wait_for(lambda: len(started) == 240, 60, "every task")
    rate = (len(started) - 1) / (started[-1] - started[0])
    first_second = sum(1 for t in started if t < started[0] + 1.0)
    print(f"\n240 tasks at {rate:.1f}/s; {first_second} in the first second")
    assert abs(rate - 40) <= 4, rate
    # No burst at the start (the limit was read before the first task): 40 and the bucket's saved-up tenth of a second.
    assert first_second <= 50, first_second
    app.limit(queue, None)
    assert queue not in read_limits(kafka.bootstrap)


@pytest.mark.parametrize("rate", ["fast", "0/s", "100/sec", "1e3/s"])
def test_a_bad_rate_is_refused_in_one_line_with_exit_2(rate: str) -> None:
    done = cli("127.0.0.1:1", "queue", "limit", "q", rate)  # refused before Kafka is asked
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and repr(rate) in lines[0], done.stderr


def test_an_unknown_queue_is_refused_with_exit_2(kafka: Kafka) -> None:
    queue = unique("no-such")
    done = cli(kafka.bootstrap, "queue", "limit", queue, "10/s")
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and f"no queue {queue!r}" in lines[0], done.stderr
    with pytest.raises(ValueError, match="no queue"):
        kqueue.App("x", kafka.bootstrap).limit(queue, "10/s")
    neither = cli(kafka.bootstrap, "queue", "limit", queue)
    assert neither.returncode == 2 and "or --clear" in neither.stderr
