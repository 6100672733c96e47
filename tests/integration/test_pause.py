"""Pause and resume through a real broker, as an operator does it during an incident: workers run a
steady flow of cheap tasks; `kqueue queue pause Q --reason incident` stops every worker starting
tasks within 2 s while enqueueing goes on; a restarted worker and a new one run nothing while the
queue is paused; `kqueue stats` shows it; `kqueue queue resume Q` runs everything enqueued, each
task once and each key in order. Then the same through the REST API and `app.pause/resume`, and
unknown queues refused by the CLI, the API and the SDK; a scheduled task reaches the paused lane
through its delay tier and waits there."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest

import kqueue
from kqueue.control.stats import read_queue_stats
from kqueue.core import names
from kqueue.core.control import ControlCommand
from tests.support.api import ApiProcess
from tests.support.kafka import Kafka, unique, wait_for_members
from tests.support.worker import wait_for

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.apps.paced:app"


def _worker(bootstrap: str, queue: str, group: str, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "KQUEUE_BOOTSTRAP_SERVERS": bootstrap, "KQ_TEST_QUEUE": queue, "KQ_TEST_LOG": str(log)}
    return subprocess.Popen([sys.executable, "-m", "kqueue", "consume", "--app", APP, "--group", group,
                             "--log-level", "WARNING", "--grace", "10"], env=env, cwd=ROOT)


def _stop(worker: subprocess.Popen[bytes]) -> None:
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 0


def _cli(bootstrap: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kqueue", *args], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "KQUEUE_BOOTSTRAP_SERVERS": bootstrap}, timeout=60, check=False)


def _runs(log: Path) -> list[tuple[str, str, int]]:
    """(task id, key, started ms) per completed run."""
    if not log.exists():
        return []
    rows = [line.split() for line in log.read_text().splitlines() if line.strip()]
    return [(task_id, key, int(started)) for task_id, _pid, key, started, _finished in rows]


def _pause_written_at(kafka: Kafka, queue: str) -> float:
    """When the queue's newest pause record was appended to _kqueue.control (broker time, seconds)."""
    records = [m for m in kafka.read_all(names.control_topic(), timeout=5) if m.key() == queue.encode()]
    assert records and ControlCommand.decode(records[-1].value()).command == "pause"
    return float(records[-1].timestamp()[1]) / 1000


class Flow:
    """Enqueues a cheap task every few milliseconds on a thread, keyed over eight keys, until stopped."""

    def __init__(self, bootstrap: str, queue: str) -> None:
        self.app = kqueue.App("pause-producer", bootstrap, partitions=4)
        self.task = self.app.task(queue=queue, name="step")(lambda payload: None)
        self.sent: list[tuple[str, str, float]] = []  # (task id, key, when) in enqueue order
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            key = f"k{n % 8}"
            self.sent.append((self.task.enqueue({"n": n, "sleep": 0.005}, key=key), key, time.time()))
            n += 1
            if n % 10 == 0:
                self.app.flush()
            time.sleep(0.01)
        self.app.flush()

    def __enter__(self) -> Flow:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.mark.slow
def test_a_paused_queue_starts_nothing_on_any_worker_until_resumed_and_loses_nothing(
        kafka: Kafka, tmp_path: Path) -> None:
    queue, group, log = unique("pause"), unique("g"), tmp_path / "runs.log"
    kqueue.App("setup", kafka.bootstrap, partitions=4).ensure_queue(queue)
    workers = [_worker(kafka.bootstrap, queue, group, log) for _ in range(2)]
    try:
        with Flow(kafka.bootstrap, queue) as flow:
            wait_for_members(kafka.bootstrap, group, 2)
            wait_for(lambda: len(_runs(log)) >= 100, 60, "the flow to run")
            asked = time.time()
            paused = _cli(kafka.bootstrap, "queue", "pause", queue, "--reason", "incident")
            answered = time.time()
            assert paused.returncode == 0 and f"queue {queue} is paused since" in paused.stdout, paused.stderr
            sent_at_pause = len(flow.sent)
            time.sleep(4.0)
            last_start = max(started for _, _, started in _runs(log)) / 1000
            written = _pause_written_at(kafka, queue)
            print(f"pause: the last task started {last_start - written:+.3f} s after the pause record was "
                  f"written ({last_start - asked:+.3f} s after `kqueue queue pause` was run, "
                  f"{last_start - answered:+.3f} s after it returned)")
            # The record was in Kafka when the command returned (its time is when the command's client
            # made it, before it had connected): the promise counts from there.
            assert asked <= written <= answered and last_start <= answered + 2.0
            assert len(flow.sent) > sent_at_pause + 100  # enqueueing went on meanwhile

            # A restarted worker and a new one: still nothing runs (they read the pause first).
            _stop(workers[0])
            workers[0] = _worker(kafka.bootstrap, queue, group, log)
            workers.append(_worker(kafka.bootstrap, queue, group, log))
            wait_for_members(kafka.bootstrap, group, 3)
            time.sleep(3.0)
            assert max(started for _, _, started in _runs(log)) / 1000 == last_start

            stats = _cli(kafka.bootstrap, "stats", queue, "--group", group, "--json")
            assert stats.returncode == 0, stats.stderr
            shown = json.loads(stats.stdout)["paused"]
            assert shown["reason"] == "incident" and asked * 1000 - 1000 <= shown["since"] <= answered * 1000
            assert json.loads(stats.stdout)["lag"] > 0
        resumed = _cli(kafka.bootstrap, "queue", "resume", queue)
        assert resumed.returncode == 0 and f"queue {queue} is running" in resumed.stdout, resumed.stderr
        ids = [task_id for task_id, _, _ in flow.sent]
        wait_for(lambda: set(ids) <= {task_id for task_id, _, _ in _runs(log)}, 90, "every task to run")
        time.sleep(1.0)
    finally:
        for worker in workers:
            _stop(worker)
    runs = _runs(log)
    counts = Counter(task_id for task_id, _, _ in runs)
    assert sorted(counts) == sorted(ids) and set(counts.values()) == {1}  # nothing lost, nothing twice
    started = {task_id: at for task_id, _, at in runs}
    for key in {key for _, key, _ in flow.sent}:
        mine = [started[task_id] for task_id, k, _ in flow.sent if k == key]
        assert mine == sorted(mine)  # each key in enqueue order, across the pause and the restarts


@pytest.mark.slow
def test_pause_and_resume_through_the_api_and_the_sdk(kafka: Kafka, tmp_path: Path) -> None:
    queue, group, log = unique("pauseapi"), unique("g"), tmp_path / "runs.log"
    app = kqueue.App("pause-sdk", kafka.bootstrap, partitions=2)
    step = app.task(queue=queue, name="step")(lambda payload: None)
    app.ensure_queue(queue)
    worker = _worker(kafka.bootstrap, queue, group, log)
    api = ApiProcess(kafka.bootstrap, queue, tmp_path / "view.db", app=APP)
    try:
        wait_for_members(kafka.bootstrap, group, 1)
        status, body = api.request("POST", f"/api/v1/queues/{queue}/pause", {"reason": "deploy"})
        assert status == 200, body
        assert body["queue"] == queue and body["paused"] is True and body["reason"] == "deploy"
        since = body["since"]
        _, listed = api.request("GET", "/api/v1/queues")
        assert [q["paused"] for q in listed if q["queue"] == queue] == [{"since": since, "reason": "deploy"}]
        _, detail = api.request("GET", f"/api/v1/queues/{queue}")
        assert detail["paused"] == {"since": since, "reason": "deploy"}
        # A repeated pause keeps its since; enqueueing still works.
        assert api.request("POST", f"/api/v1/queues/{queue}/pause")[1]["since"] == since
        time.sleep(2.0)  # the workers' promise: no task starts 2 s after the pause
        accepted = [api.request("POST", "/api/v1/tasks", {"type": "step", "payload": {"n": n}})
                    for n in range(10)]
        assert {code for code, _ in accepted} == {202}
        time.sleep(3.0)
        assert _runs(log) == []
        status, body = api.request("POST", f"/api/v1/queues/{queue}/resume")
        assert (status, body) == (200, {"queue": queue, "paused": False, "since": None, "reason": None})
        wait_for(lambda: len(_runs(log)) == 10, 60, "the API's tasks to run")
        assert api.request("GET", f"/api/v1/queues/{queue}")[1]["paused"] is None

        # The SDK, as a service would call it.
        state = app.pause(queue)
        assert state.paused is not None and state.as_json()["paused"] is True
        time.sleep(2.0)
        later = [step.enqueue({"n": n}, key="k") for n in range(5)]
        later.append(step.enqueue({"n": 5}, key="k", delay=timedelta(seconds=1)))  # through a delay tier
        app.flush()

        def moved_to_the_lane() -> bool:  # the router went on: the tier is drained, the lane holds them
            lanes = read_queue_stats(kafka.bootstrap, queue, group).lanes
            tier = next(lane for lane in lanes if lane.tier == "1s")
            # Lag counts offsets, and the router's move commits a transaction marker in the lane too.
            return tier.committed == tier.records == 1 and sum(lane.lag for lane in lanes if lane.lane) >= 6

        wait_for(moved_to_the_lane, 30, "the scheduled task to reach the paused lane")
        assert len(_runs(log)) == 10
        wait_for(lambda: api.request("GET", f"/api/v1/queues/{queue}")[1]["paused"] is not None, 30,
                 "the view to read the SDK's pause")
        assert app.resume(queue).paused is None
        wait_for(lambda: set(later) <= {task_id for task_id, _, _ in _runs(log)}, 60, "the SDK's tasks")

        # Bad input: an unknown queue is refused everywhere, in one line.
        assert api.request("POST", "/api/v1/queues/nope/pause")[0] == 404
        assert api.request("POST", "/api/v1/queues/nope/resume")[0] == 404
        assert api.request("POST", f"/api/v1/queues/{queue}/pause", {"reason": 5})[0] == 422
        assert api.request("POST", f"/api/v1/queues/{queue}/pause", {"why": "x"})[0] == 422
        for verb in ("pause", "resume"):
            done = _cli(kafka.bootstrap, "queue", verb, unique("nope"))
            assert done.returncode == 2 and done.stdout == "", done.stdout
            assert len(done.stderr.strip().splitlines()) == 1 and "no queue" in done.stderr
        with pytest.raises(ValueError, match="no queue"):
            app.pause(unique("nope"))
        assert api.request("GET", f"/api/v1/queues/{queue}")[1]["paused"] is None  # nothing else changed
    finally:
        api.stop()
        _stop(worker)
