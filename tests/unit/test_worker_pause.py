"""A paused queue in the worker's state machine, driven through the scripted edge: tasks a runner
had taken stop before they start, queued ones are parked, nothing is committed past them, another
queue goes on, partitions assigned while paused stay paused, and the resume runs everything once,
each key in order. Through a real broker: tests/integration/test_pause.py."""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import kqueue
from kqueue.core import names
from kqueue.core.control import ControlCommand
from kqueue.worker.partitions import PauseReason
from tests.support.scripted_edge import ScriptedEdge, ScriptedSettler, scripted_transport
from tests.support.worker import ThreadedWorker, wait_for

Q, OTHER = "jobs", "other"
P0, P1, O0 = (Q, 0), (Q, 1), (OTHER, 0)
TIER = (names.delay_topic(Q, "1s"), 0)


class Rig:
    def __init__(self) -> None:
        self.app = kqueue.App("pause", "127.0.0.1:1")  # never contacted: the transport is scripted
        self.edge = ScriptedEdge()
        self.settler = ScriptedSettler(self.edge)
        self.gates: dict[str, threading.Event] = {}
        self.ran: list[tuple[str, int]] = []  # (key, n) in the order they started
        self.lock = threading.Lock()

        def job(payload: dict[str, Any]) -> None:
            with self.lock:
                self.ran.append((payload["key"], payload["n"]))
            if payload.get("gate"):
                assert self.gate(payload["gate"]).wait(10), "gate never opened"
            if payload.get("sleep"):
                time.sleep(payload["sleep"])

        self.app.task(queue=Q, name="job")(job)
        self.app.task(queue=OTHER, name="job")(job)

    def gate(self, name: str) -> threading.Event:
        return self.gates.setdefault(name, threading.Event())

    def task(self, tp: tuple[str, int], n: int, key: str, **payload: Any) -> int:
        body = json.dumps({"n": n, "key": key, **payload}).encode()
        headers = [(names.H_TYPE, b"job"), (names.H_CONTENT_TYPE, b"json"), (names.H_ID, f"task-{n}".encode())]
        return self.edge.append(tp[0], tp[1], body, key.encode(), headers)

    def worker(self, **options: Any) -> ThreadedWorker:
        settings: dict[str, Any] = {"group": "g", "queues": [Q, OTHER], "commit_interval": 0.0, "grace": 1.0,
                                    "poll_timeout": 0.01, **options}
        return ThreadedWorker(self.app, scripted_transport(self.edge, self.settler), **settings)

    def started(self, key: str | None = None) -> list[int]:
        with self.lock:
            return [n for k, n in self.ran if key is None or k == key]


@pytest.fixture()
def rig() -> Iterator[Rig]:
    r = Rig()
    yield r
    for gate in r.gates.values():
        gate.set()


def _paused(w: ThreadedWorker, tp: tuple[str, int]) -> bool:
    owner = w.worker.assignment() and w.worker._table.get(tp)
    return bool(owner) and PauseReason.PAUSED in owner.pauses  # type: ignore[union-attr]


def _pause(w: ThreadedWorker, queue: str = Q) -> None:
    w.worker.pauses.apply(queue, ControlCommand("pause", queue, int(time.time() * 1000), reason="test"))


def _resume(w: ThreadedWorker, queue: str = Q) -> None:
    w.worker.pauses.apply(queue, ControlCommand("resume", queue, int(time.time() * 1000)))


def test_a_pause_stops_taken_and_queued_tasks_before_they_start_and_the_resume_runs_each_once(rig: Rig) -> None:
    rig.edge.assign(P0, O0)
    rig.task(P0, 0, "k", gate="first")
    for n in range(1, 4):
        rig.task(P0, n, "k")  # one run with offset 0: taken by the runner before the pause
    for n in range(4, 7):
        rig.task(P0, n, f"q{n}")  # queued in the executor behind the busy runner
    with rig.worker(concurrency=1) as w:
        wait_for(lambda: rig.started() == [0], timeout=5, what="offset 0 to start")
        _pause(w)
        wait_for(lambda: _paused(w, P0), timeout=5, what="the pause")
        rig.gate("first").set()
        wait_for(lambda: rig.edge.committed.get(P0) == 1, timeout=5, what="offset 0's commit")
        rig.task(O0, 7, "o")  # another queue goes on meanwhile
        rig.task(P0, 8, "late")  # fetched after the pause: not started either
        wait_for(lambda: rig.started("o") == [7], timeout=5, what="the other queue's task")
        time.sleep(0.2)
        assert rig.started() == [0, 7]  # nothing of the paused queue started after offset 0
        assert rig.edge.committed.get(P0) == 1  # never past a task that did not start
        assert w.worker._table.unsettled() == 0  # parked tasks hold back no other queue
        _resume(w)
        wait_for(lambda: rig.edge.committed.get(P0) == 8, timeout=5, what="everything to commit")
        w.stop()
    assert sorted(rig.started()) == [0, 1, 2, 3, 4, 5, 6, 7, 8]  # each once
    assert rig.started("k") == [0, 1, 2, 3]  # in key order


def test_partitions_assigned_while_paused_stay_paused_and_tiers_are_never_paused(rig: Rig) -> None:
    rig.edge.assign(P0, TIER)
    with rig.worker() as w:
        _pause(w)
        wait_for(lambda: _paused(w, P0), timeout=5, what="the pause")
        rig.task(P1, 0, "a")
        rig.edge.assign(P1)
        wait_for(lambda: P1 in w.worker._table.states, timeout=5, what="the assignment")
        time.sleep(0.2)
        assert P1 in rig.edge.paused and rig.started() == []
        assert w.worker.state()["paused_queues"] == [Q]  # what SIGUSR1 logs
        assert not w.worker._table.states[TIER].pauses  # due records still move to the lanes
        _resume(w)
        wait_for(lambda: rig.started() == [0], timeout=5, what="the task after the resume")
        assert not rig.edge.paused & {P0, P1}
        w.stop()


def test_a_pause_known_before_the_first_records_starts_nothing(rig: Rig) -> None:
    rig.edge.assign(P0)
    for n in range(5):
        rig.task(P0, n, f"k{n}")
    worker = rig.worker()
    _pause(worker)  # as a restarted worker reads it from _kqueue.control before its first task
    with worker as w:
        wait_for(lambda: w.worker.stats.assigned == 1, timeout=5, what="the assignment")
        time.sleep(0.2)
        assert rig.started() == [] and rig.edge.committed.get(P0, 0) == 0
        _resume(w)
        wait_for(lambda: rig.edge.committed.get(P0) == 5, timeout=5, what="everything to commit")
        w.stop()
    assert sorted(rig.started()) == [0, 1, 2, 3, 4]


def test_a_quick_pause_and_resume_keeps_each_keys_order(rig: Rig) -> None:
    """Pauses and resumes a few milliseconds apart while small batches arrive: tasks handed back by
    runners, parked ones and ones queued behind them interleave, and every key still runs in order."""
    rig.edge.assign(P0)
    for n in range(400):
        rig.task(P0, n, f"k{n % 4}", sleep=0.0005)
    with rig.worker(concurrency=2, batch_size=8) as w:
        deadline = time.monotonic() + 20
        while rig.edge.committed.get(P0, 0) < 400 and time.monotonic() < deadline:
            _pause(w)
            time.sleep(0.001 + random.random() * 0.003)
            _resume(w)
            time.sleep(random.random() * 0.003)
        w.stop()
    for k in range(4):
        assert rig.started(f"k{k}") == list(range(k, 400, 4))
