"""Real `kqueue consume` processes: SIGTERM drains, SIGKILL loses nothing, groups split and heal."""

from __future__ import annotations

import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

import kqueue
from tests.support.kafka import Kafka, unique, wait_for_members
from tests.support.worker import consume_process, recorded, wait_for


def _enqueue(bootstrap: str, queue: str, count: int, sleep: float, keys: int = 200) -> list[str]:
    app = kqueue.App("producer", bootstrap, partitions=6)

    @app.task(queue=queue, name="record")
    def record(payload: dict[str, object]) -> None: ...

    ids = [record.enqueue({"n": i, "sleep": sleep}, key=f"key-{i % keys}") for i in range(count)]
    app.flush()
    return ids


def test_sigterm_drains_without_loss_or_duplicates(bootstrap: str, tmp_path: Path) -> None:
    queue, group, log = unique("term"), unique("g"), tmp_path / "done.log"
    ids = _enqueue(bootstrap, queue, 2000, sleep=0.004)
    # Small batches: the worker holds ~400 tasks at a time, so SIGTERM lands with work left to fetch.
    first = consume_process(bootstrap, queue, group, log, "--concurrency", "8", "--batch-size", "100")
    wait_for(lambda: len(recorded(log)) >= 200, what="first worker to make progress")
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=60) == 0
    after_first = len(recorded(log))
    assert after_first < len(ids)  # it really stopped part-way

    second = consume_process(bootstrap, queue, group, log, "--concurrency", "8")
    try:
        wait_for(lambda: set(recorded(log)) >= set(ids), timeout=120, what="every task completed")
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=60) == 0
    counts = Counter(recorded(log))
    assert set(counts) == set(ids)
    assert [task for task, n in counts.items() if n > 1] == []  # drained and committed: nothing ran twice


def test_sigkill_mid_batch_loses_nothing(bootstrap: str, tmp_path: Path) -> None:
    queue, group, log = unique("kill"), unique("g"), tmp_path / "done.log"
    ids = _enqueue(bootstrap, queue, 2000, sleep=0.002)
    victim = consume_process(bootstrap, queue, group, log, "--concurrency", "8")
    wait_for(lambda: len(recorded(log)) >= 400, what="progress before the kill")
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    survivor = consume_process(bootstrap, queue, group, log, "--concurrency", "8")
    try:
        wait_for(lambda: set(recorded(log)) >= set(ids), timeout=120, what="every task completed")
    finally:
        survivor.send_signal(signal.SIGTERM)
        assert survivor.wait(timeout=60) == 0
    counts = Counter(recorded(log))
    assert set(counts) == set(ids)  # at least once for every task
    duplicates = sum(n - 1 for n in counts.values())
    # Only work done since the last commit can repeat: bounded by what one worker holds in flight.
    assert duplicates <= 2000
    print(f"SIGKILL: {len(ids)} tasks, {duplicates} ran twice (redelivered after the kill)")


def test_two_workers_split_partitions_and_survive_one_leaving(bootstrap: str, tmp_path: Path) -> None:
    queue, group, log = unique("pair"), unique("g"), tmp_path / "done.log"
    one = consume_process(bootstrap, queue, group, log, "--concurrency", "4")
    two = consume_process(bootstrap, queue, group, log, "--concurrency", "4")
    try:
        # Split first: a member that joins while the other drains everything would find no work.
        wait_for_members(bootstrap, group, 2)
        ids = _enqueue(bootstrap, queue, 3000, sleep=0.003, keys=500)
        def pids() -> set[str]:
            return {line.split()[1] for line in log.read_text().splitlines()} if log.exists() else set()

        wait_for(lambda: len(pids()) == 2, timeout=90, what="both workers to get partitions")
        assert one.poll() is None and two.poll() is None
        one.send_signal(signal.SIGTERM)
        assert one.wait(timeout=60) == 0
        wait_for(lambda: set(recorded(log)) >= set(ids), timeout=120, what="the survivor to finish all")
    finally:
        for proc in (one, two):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=60)
    counts = Counter(recorded(log))
    assert set(counts) == set(ids)  # nothing lost across the hand-over
    # A commit that meets the group mid-rebalance is aborted and the survivor rewinds to the committed
    # offsets, so some tasks may run twice; never more than the in-flight bound (batch_size * 4).
    duplicates = sum(counts.values()) - len(ids)
    assert duplicates <= 2000
    print(f"hand-over: {len(ids)} tasks, {duplicates} ran twice")


def test_processes_flag_runs_a_supervised_group(bootstrap: str, tmp_path: Path) -> None:
    queue, group, log = unique("procs"), unique("g"), tmp_path / "done.log"
    ids = _enqueue(bootstrap, queue, 600, sleep=0.002)
    parent = consume_process(bootstrap, queue, group, log, "--processes", "2", "--concurrency", "4")
    try:
        wait_for(lambda: set(recorded(log)) >= set(ids), timeout=120, what="every task completed")
    finally:
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(timeout=90) == 0
    workers = {line.split()[1] for line in log.read_text().splitlines()}
    assert str(parent.pid) not in workers  # the supervisor only supervises
    assert len(workers) >= 1 and set(recorded(log)) == set(ids)


@pytest.mark.parametrize(("after", "processes"), [(1.0, 1), (1.0, 2), (4.0, 1)])
def test_sigterm_during_start_up_exits_0_without_a_traceback(kafka: Kafka, tmp_path: Path, after: float,
                                                            processes: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """While the app is imported (it takes 2 s here) or the worker joins the group: a clean exit."""
    monkeypatch.setenv("KQ_TEST_IMPORT_DELAY", "2")
    worker = consume_process(kafka.bootstrap, unique("early"), unique("g"), tmp_path / "done.log",
                             "--processes", str(processes), stderr=subprocess.PIPE)
    time.sleep(after)
    worker.send_signal(signal.SIGTERM)
    _, err = worker.communicate(timeout=90)
    assert worker.returncode == 0, err.decode()
    assert b"Traceback" not in err
