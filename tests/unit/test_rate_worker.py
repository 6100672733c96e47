"""Rate limits in the worker, through the scripted consumer edge: each limit's share follows the
assignment, tasks waiting for a token hold up neither a revoke nor a shutdown nor the worker's other
partitions, and what waits is bounded. The group-wide rate is measured through a real broker in
tests/integration/test_rate_limits.py."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

import kqueue
from kqueue.core import names
from kqueue.worker.partitions import PauseReason
from kqueue.worker.ratelimits import RateLimits
from tests.support.scripted_edge import ScriptedEdge, ScriptedSettler, scripted_transport
from tests.support.worker import ThreadedWorker, wait_for

Q = "jobs"
P0, P1, P2 = (Q, 0), (Q, 1), (Q, 2)


@dataclass
class Rig:
    app: kqueue.App
    edge: ScriptedEdge
    settler: ScriptedSettler
    ran: list[int] = field(default_factory=list)

    def task(self, tp: tuple[str, int], n: int, kind: str) -> None:
        headers = [(names.H_TYPE, kind.encode()), (names.H_CONTENT_TYPE, b"json"), (names.H_ID, f"task-{n}".encode())]
        self.edge.append(tp[0], tp[1], json.dumps({"n": n}).encode(), f"k{n}".encode(), headers)

    def worker(self, **options: Any) -> ThreadedWorker:
        settings: dict[str, Any] = {"group": "g", "queues": [Q], "commit_interval": 0.0, "grace": 10.0,
                                    "poll_timeout": 0.01, **options}
        return ThreadedWorker(self.app, scripted_transport(self.edge, self.settler), **settings)


@pytest.fixture()
def rig() -> Iterator[Rig]:
    app = kqueue.App("rates", "127.0.0.1:1", partitions=6)  # never contacted: the transport is scripted
    edge = ScriptedEdge()
    r = Rig(app, edge, ScriptedSettler(edge))

    @app.task(queue=Q, name="slow", rate_limit="60/h")  # 6 partitions: at most 10/h for one of them
    def slow(payload: dict[str, Any]) -> None:
        r.ran.append(payload["n"])

    @app.task(queue=Q, name="free")
    def free(payload: dict[str, Any]) -> None:
        r.ran.append(payload["n"])

    yield r


def shares(w: ThreadedWorker) -> str:
    return str(w.worker.state().get("rate_limits", {}).get(f"{Q}.slow"))


def waiting(w: ThreadedWorker) -> int | None:
    """Tasks waiting for a token (None before the worker has started)."""
    executor = w.worker.state().get("executor")
    return None if executor is None else int(executor["rate_waiting"])


def test_a_limits_share_is_its_part_of_the_queues_partitions_after_every_rebalance(rig: Rig) -> None:
    rig.edge.assign(P0, P1, P2)
    with rig.worker() as w:
        wait_for(lambda: "(0.008333/s here)" in shares(w), 5, "half of 60/h: 3 of 6 partitions")
        rig.edge.revoke(P2)
        wait_for(lambda: "(0.005556/s here)" in shares(w), 5, "2 of 6")
        rig.edge.lose(P1)
        wait_for(lambda: "(0.002778/s here)" in shares(w), 5, "1 of 6")
        rig.edge.assign(P1, P2, (Q, 3), (Q, 4), (Q, 5))
        wait_for(lambda: "(0.01667/s here)" in shares(w), 5, "all six")
        w.stop()


def test_tasks_waiting_for_tokens_hold_up_no_revoke_and_the_others_run(rig: Rig) -> None:
    """A share of 10/h starts nothing soon: a revoke that waited for those tasks would take the grace
    (10 s); they are left to the next owner, uncommitted."""
    rig.edge.assign(P0)
    for n in range(3):
        rig.task(P0, n, "slow")
    rig.task(P0, 3, "free")
    with rig.worker() as w:
        wait_for(lambda: rig.ran == [3], 5, "the unlimited task")
        assert waiting(w) == 3
        started = time.monotonic()
        rig.edge.revoke(P0)
        wait_for(lambda: P0 not in rig.edge.assigned and not w.worker.assignment(), 5, "the revoke")
        assert time.monotonic() - started < 2.0
        assert rig.edge.committed.get(P0, 0) == 0  # nothing past the waiting tasks: the next owner runs them
        assert waiting(w) == 0
        w.stop()
    assert rig.ran == [3]


def test_a_shutdown_does_not_wait_for_tasks_waiting_for_tokens(rig: Rig) -> None:
    rig.edge.assign(P0)
    for n in range(3):
        rig.task(P0, n, "slow")
    w = rig.worker()
    with w:
        wait_for(lambda: waiting(w) == 3, 5, "three waiting")
        started = time.monotonic()
        w.stop()
    assert time.monotonic() - started < 2.0  # not the 10 s grace


def test_waiting_tasks_have_their_own_bound_and_leave_the_other_partitions_fetching(rig: Rig) -> None:
    """20 limited tasks on P0 with a bound of 8: P0 pauses for RATE at the bound; P1's unlimited tasks
    (more than the bound) all run: the waiting ones do not count towards the unsettled bound."""
    rig.edge.assign(P0, P1)
    for n in range(20):
        rig.task(P0, n, "slow")
    for n in range(100, 130):
        rig.task(P1, n, "free")
    with rig.worker(max_inflight=8, batch_size=4) as w:
        wait_for(lambda: len(rig.ran) == 30, 5, "every unlimited task")
        held = waiting(w)
        assert held is not None and 8 <= held < 20, held  # fetched up to the bound (and a batch), not all
        assert "rate" in w.worker.state()["paused"][f"{Q}/0"]["paused"]
        w.stop()


def test_no_limit_no_gate(rig: Rig) -> None:
    rig.app.tasks.pop((Q, "slow"))
    rig.edge.assign(P0)
    rig.task(P0, 1, "free")
    with rig.worker() as w:
        wait_for(lambda: rig.ran == [1], 5, "the task")
        assert w.worker.state()["rate_limits"] == {}
        assert PauseReason.RATE not in {r for s in w.worker._table.states.values() for r in s.pauses}
        w.stop()


def test_shares_come_from_the_queues_partition_count_read_again_when_it_grew(rig: Rig) -> None:
    asked: list[list[str]] = []
    counts = {Q: 6}

    def partition_counts(topics: list[str]) -> dict[str, int]:
        asked.append(topics)
        return {t: counts[t] for t in topics if t in counts}

    limits = RateLimits.of(rig.app, [Q], kafka=False)
    assert limits is not None
    [limit] = limits.limits
    limits = RateLimits(limits.limits, {}, partition_counts, guess=6)
    assert limits.shares([P0, P1, (Q, 5), ("other", 9)])[limit.bucket] == pytest.approx(60 / 3600 / 2)
    assert asked == [[Q]]  # once, at the start
    counts[Q] = 12  # partitions added: a worker owning one past the count it knew reads it again
    assert limits.shares([(Q, 11)])[limit.bucket] == pytest.approx(60 / 3600 / 12)
    assert asked == [[Q], [Q]]


def test_an_unknown_partition_count_is_taken_as_the_apps_default(rig: Rig) -> None:
    limits = RateLimits.of(rig.app, [Q], kafka=False)
    assert limits is not None
    unknown = RateLimits(limits.limits, {}, lambda topics: {}, guess=6)
    assert unknown.shares([P0])[limits.limits[0].bucket] == pytest.approx(60 / 3600 / 6)
