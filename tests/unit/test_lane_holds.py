"""Fetching by priority through the scripted edge: when a lower lane's partitions pause (`PRIORITY`)
and resume, what counts as a higher lane waiting, and the worker running high tasks first."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import kqueue
from kqueue.core import names
from kqueue.core.priority import DEFAULT_WEIGHTS, STRICT, LaneWeights, lane_ranks
from kqueue.core.records import TP
from kqueue.worker.bounds import Bounds
from kqueue.worker.lane_holds import LaneHolds
from kqueue.worker.partition_table import PartitionTable
from kqueue.worker.partitions import PauseReason
from tests.support.scripted_edge import ScriptedEdge, ScriptedSettler, scripted_transport
from tests.support.worker import ThreadedWorker, wait_for

Q = "jobs"
HIGH, NORMAL, LOW = (names.lane_topic(Q, "high"), 0), (Q, 0), (names.lane_topic(Q, "low"), 0)
LIMIT = 2000


class Lanes:
    """A partition table over the scripted edge, with the executor's queue per lane set by the test."""

    def __init__(self, weights: LaneWeights = DEFAULT_WEIGHTS) -> None:
        self.edge = ScriptedEdge()
        self.table = PartitionTable(self.edge, lambda topic: ".delay." in topic)
        self.queued = [0, 0, 0]
        self.table.assign([HIGH, NORMAL, LOW])
        self.edge.assigned |= {HIGH, NORMAL, LOW}
        self.holds = LaneHolds(self.table, weights, lane_ranks([Q]), lambda: self.queued, self.edge.cached_lag)

    def hold_tasks(self, tp: TP, count: int) -> None:
        """`count` more unsettled tasks on `tp` (tracked, as the admission does)."""
        owner = self.table.states[tp]
        start = (owner.watermark.newest or -1) + 1
        for offset in range(start, start + count):
            owner.track(offset)

    def settle(self, tp: TP, count: int) -> None:
        owner = self.table.states[tp]
        position = owner.watermark.position() or 0
        for offset in range(position, position + count):
            owner.complete(offset)

    def in_kafka(self, tp: TP, count: int) -> None:
        """Records produced and not handed out yet (the edge's log past its position)."""
        for _ in range(count):
            self.edge.append(tp[0], tp[1], b"{}")

    def priority_paused(self) -> set[TP]:
        return {tp for tp, owner in self.table.states.items() if PauseReason.PRIORITY in owner.pauses}


def test_a_lower_lane_pauses_at_its_share_while_high_has_tasks_waiting_and_resumes_at_half() -> None:
    lanes = Lanes()
    share = LIMIT * 1 // 7
    lanes.hold_tasks(LOW, share - 1)
    lanes.queued = [10, 0, share - 1]
    lanes.holds.apply(LIMIT)
    assert lanes.priority_paused() == set()  # under its share: low keeps fetching
    lanes.hold_tasks(LOW, 1)
    lanes.holds.apply(LIMIT)
    assert lanes.priority_paused() == {LOW}
    assert LOW in lanes.edge.paused
    lanes.settle(LOW, share - share // 2 - 1)
    lanes.holds.apply(LIMIT)
    assert lanes.priority_paused() == {LOW}  # above half of it: still held
    lanes.settle(LOW, 1)
    lanes.holds.apply(LIMIT)
    assert lanes.priority_paused() == set()
    assert LOW not in lanes.edge.paused


def test_a_lower_lane_resumes_as_soon_as_nothing_above_it_waits() -> None:
    lanes = Lanes()
    lanes.hold_tasks(LOW, 1000)
    lanes.queued = [5, 0, 1000]
    lanes.holds.apply(LIMIT)
    assert lanes.priority_paused() == {LOW}
    lanes.queued = [0, 0, 1000]  # high's tasks have started
    lanes.holds.apply(LIMIT)
    assert lanes.priority_paused() == set()


def test_records_not_fetched_yet_count_as_waiting_and_strict_holds_lower_lanes_holding_nothing() -> None:
    """Strict: high records in Kafka (the edge's log past its position) pause normal and low at once,
    although they hold no task: what the client fetched ahead of them is dropped, high comes next."""
    lanes = Lanes(STRICT)
    lanes.holds.apply(LIMIT)
    assert lanes.priority_paused() == set()
    lanes.in_kafka(HIGH, 3)
    lanes.holds.apply(LIMIT)
    assert lanes.priority_paused() == {NORMAL, LOW}
    lanes.edge.positions[HIGH] = 3  # handed out, and run
    lanes.holds.apply(LIMIT)
    assert lanes.priority_paused() == set()


def test_a_running_high_task_does_not_hold_lower_lanes_even_under_strict() -> None:
    """A long high task must not keep low from the handler slots it leaves idle."""
    lanes = Lanes(STRICT)
    lanes.hold_tasks(HIGH, 1)  # tracked and running: nothing queued, nothing in Kafka
    lanes.hold_tasks(LOW, 50)
    lanes.queued = [0, 0, 50]
    lanes.holds.apply(LIMIT)
    assert lanes.priority_paused() == set()


def test_a_high_partition_held_for_another_reason_does_not_hold_lower_lanes() -> None:
    lanes = Lanes(STRICT)
    lanes.in_kafka(HIGH, 3)
    lanes.table.states[HIGH].isolate(30)  # Kafka refuses one of its records: not fetched for a while
    lanes.holds.apply(LIMIT)
    assert lanes.priority_paused() == set()


def test_normal_waiting_holds_low_and_high_waiting_holds_both() -> None:
    lanes = Lanes()
    lanes.hold_tasks(NORMAL, 1000)
    lanes.hold_tasks(LOW, 1000)
    lanes.queued = [0, 1000, 1000]
    lanes.holds.apply(LIMIT)
    assert lanes.priority_paused() == {LOW}
    lanes.queued = [1, 1000, 1000]
    lanes.holds.apply(LIMIT)
    assert lanes.priority_paused() == {NORMAL, LOW}


def test_a_lane_that_reaches_its_share_between_two_looks_is_held_on_the_next_turn() -> None:
    lanes = Lanes()
    lanes.queued = [10, 0, 0]
    lanes.holds.apply(LIMIT)
    lanes.hold_tasks(LOW, 500)  # one poll's worth, before the next full look
    lanes.holds.check()
    assert lanes.priority_paused() == {LOW}


def test_a_held_lanes_tasks_do_not_keep_the_higher_lane_from_being_fetched() -> None:
    """The worker's bound is full of low tasks when high records arrive: low is held, and its tasks no
    longer count towards backpressure, so high is fetched now, not after half the bound drained."""
    lanes = Lanes()
    bounds = Bounds(lanes.table, LIMIT, 8, lambda: 0.0, lanes.holds)
    lanes.hold_tasks(LOW, LIMIT)
    lanes.queued = [0, 0, LIMIT]
    bounds.apply()
    assert lanes.table.everywhere(PauseReason.BACKPRESSURE)
    lanes.in_kafka(HIGH, 100)
    bounds._next_check = 0.0  # the partitions' look is due
    bounds.apply()
    assert lanes.priority_paused() == {LOW}
    bounds.apply()
    assert not lanes.table.everywhere(PauseReason.BACKPRESSURE)
    assert HIGH not in lanes.edge.paused and LOW in lanes.edge.paused


# -- the worker --------------------------------------------------------------------------------------


class Rig:
    def __init__(self) -> None:
        self.app = kqueue.App("lanes", "127.0.0.1:1")  # never contacted: the transport is scripted
        self.edge = ScriptedEdge()
        self.settler = ScriptedSettler(self.edge)
        self.ran: list[str] = []
        self.lock = threading.Lock()

        @self.app.task(queue=Q, name="job")
        def job(payload: dict[str, Any], ctx: kqueue.TaskContext) -> None:
            with self.lock:
                self.ran.append(payload["lane"])

    def task(self, tp: TP, lane: str, key: str) -> None:
        headers = [(names.H_TYPE, b"job"), (names.H_CONTENT_TYPE, b"json")]
        self.edge.append(tp[0], tp[1], json.dumps({"lane": lane}).encode(), key.encode(), headers)

    def worker(self, **options: Any) -> ThreadedWorker:
        settings: dict[str, Any] = {"group": "g", "queues": [Q], "commit_interval": 0.0, "grace": 1.0,
                                    "poll_timeout": 0.01, "concurrency": 1, **options}
        return ThreadedWorker(self.app, scripted_transport(self.edge, self.settler), **settings)


@pytest.fixture()
def rig() -> Iterator[Rig]:
    yield Rig()


def test_the_worker_runs_lanes_by_weight(rig: Rig) -> None:
    """Everything fetched in one poll (low first), one handler slot: high gets six tasks in seven."""
    for n in range(140):
        rig.task(LOW, "low", f"l{n}")
        rig.task(HIGH, "high", f"h{n}")
    rig.edge.assign(HIGH, NORMAL, LOW)
    with rig.worker(batch_size=1000) as w:
        wait_for(lambda: len(rig.ran) == 280, timeout=10, what="every task")
        w.stop()
    first = rig.ran[:140]
    assert first.count("high") in range(118, 123), first


def test_the_worker_under_strict_weights_runs_high_first(rig: Rig) -> None:
    for n in range(100):
        rig.task(LOW, "low", f"l{n}")
        rig.task(NORMAL, "normal", f"n{n}")
        rig.task(HIGH, "high", f"h{n}")
    rig.edge.assign(HIGH, NORMAL, LOW)
    with rig.worker(batch_size=1000, weights=STRICT) as w:
        wait_for(lambda: len(rig.ran) == 300, timeout=10, what="every task")
        w.stop()
    assert rig.ran == ["high"] * 100 + ["normal"] * 100 + ["low"] * 100
