"""Idempotency keys and unique tasks through a real broker: racing producers in two processes,
workers as `kqueue consume` subprocesses, and a SIGKILL in the middle of a run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from kqueue.core import names
from kqueue.core.status import TaskEvent
from tests.support.kafka import Kafka, unique
from tests.support.worker import wait_for

ROOT = Path(__file__).resolve().parents[2]

PRODUCE = """
import json, sys
from tests.apps.dedup import app
task = app.tasks[(sys.argv[1], sys.argv[2])]
ids = {}
for key in json.loads(sys.argv[3]):
    for _ in range(2):  # a retried call in the same process
        task_id = task.enqueue({"sleep": float(sys.argv[4])}, idempotency_key=key) if sys.argv[2] == "charge" \\
            else task.enqueue({"account": key, "sleep": float(sys.argv[4])}, unique_key=key)
        ids.setdefault(key, task_id)  # the first call's id
app.flush()
print(json.dumps(ids))
"""


def _env(bootstrap: str, queue: str, log: Path) -> dict[str, str]:
    return {**os.environ, "KQUEUE_BOOTSTRAP_SERVERS": bootstrap, "KQ_TEST_QUEUE": queue, "KQ_TEST_LOG": str(log)}


def _producers(env: dict[str, str], queue: str, task: str, keys: list[str], sleep: float,
               count: int = 2) -> list[dict[str, str]]:
    """`count` processes enqueue the same keys at the same time; each returns key -> task id."""
    procs = [subprocess.Popen([sys.executable, "-c", PRODUCE, queue, task, json.dumps(keys), str(sleep)],
                              env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(count)]
    out = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr
        out.append(json.loads(stdout))
    return out


def _worker(env: dict[str, str], group: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "kqueue", "consume", "--app", "tests.apps.dedup:app",
                             "--group", group, "--concurrency", "4", "--log-level", "WARNING"], env=env, cwd=ROOT)


def _runs(log: Path) -> list[tuple[str, str, str, str]]:
    if not log.exists():
        return []
    return [tuple(line.split()) for line in log.read_text().splitlines() if line.strip()]  # type: ignore[misc]


def _stop(worker: subprocess.Popen[bytes]) -> None:
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(60) == 0


def test_an_idempotency_key_runs_one_task_across_racing_producers_and_a_crash(kafka: Kafka, tmp_path: Path) -> None:
    queue, group, log = unique("idem"), unique("g"), tmp_path / "runs.log"
    env = _env(kafka.bootstrap, queue, log)
    keys = [f"order-{n}" for n in range(30)]
    first, second = _producers(env, queue, "charge", keys, 0.1)
    assert first == second  # both processes, and each one's retried call, got the same id per key
    worker = _worker(env, group)
    try:
        wait_for(lambda: len({r[1] for r in _runs(log) if r[0] == "end"}) >= 8, 90, "some keys to run")
        worker.send_signal(signal.SIGKILL)  # mid-run: some started, nothing after the last commit is written
        worker.wait(30)
        late, = _producers(env, queue, "charge", keys[:10], 0.1, count=1)  # enqueued again after the crash
        assert late == {k: first[k] for k in keys[:10]}
        worker = _worker(env, group)
        wait_for(lambda: {r[1] for r in _runs(log) if r[0] == "end"} == set(keys), 120, "every key to run")
    finally:
        _stop(worker)
    origins: dict[str, set[str]] = defaultdict(set)
    for _what, key, task_id, origin in _runs(log):
        assert task_id == first[key]
        origins[key].add(origin)
    # Five records per key (two producers twice, one more after the crash), one of them ever ran:
    # a crash may run that one's handler again (at least once), never a duplicate.
    assert {key: len(found) for key, found in origins.items()} == dict.fromkeys(keys, 1)


def test_a_unique_task_does_not_run_twice_at_once_even_after_a_crash(kafka: Kafka, tmp_path: Path) -> None:
    queue, group, log = unique("uniq"), unique("g"), tmp_path / "runs.log"
    env = _env(kafka.bootstrap, queue, log)
    (holder,) = [ids["acct-1"] for ids in _producers(env, queue, "sync_account", ["acct-1"], 4, count=1)]
    worker = _worker(env, group)
    try:
        wait_for(lambda: any(r[0] == "start" for r in _runs(log)), 90, "the first task to start")
        dups = [ids["acct-1"] for ids in _producers(env, queue, "sync_account", ["acct-1"], 4)]
        worker.send_signal(signal.SIGKILL)  # while the holder runs: its claim was never committed
        worker.wait(30)
        worker = _worker(env, group)
        wait_for(lambda: any(r[0] == "end" and r[2] == holder for r in _runs(log)), 120, "the holder to finish")
        events = _events(kafka, set(dups))
        wait_for(lambda: set(_events(kafka, set(dups))) == set(dups), 60, "the duplicates' cancelled events")
        events = _events(kafka, set(dups))
        # Finished now: the same key runs again.
        (after,) = [ids["acct-1"] for ids in _producers(env, queue, "sync_account", ["acct-1"], 0, count=1)]
        wait_for(lambda: any(r[0] == "end" and r[2] == after for r in _runs(log)), 90, "a task after the holder")
    finally:
        _stop(worker)
    ran = {r[2] for r in _runs(log)}
    assert ran == {holder, after}  # each duplicate was settled without running
    assert all(e.status == "cancelled" and holder in (e.error or "") for e in events.values())
    starts = [r[2] for r in _runs(log) if r[0] == "start"]
    assert starts.index(after) > max(i for i, t in enumerate(starts) if t == holder)  # never at once


def _events(kafka: Kafka, ids: set[str]) -> dict[str, TaskEvent]:
    out = {}
    for msg in kafka.read_all(names.status_topic(), timeout=5):
        value = msg.value()
        if value is not None:
            event = TaskEvent.decode(value)
            if event.task_id in ids:
                out[event.task_id] = event
    return out
