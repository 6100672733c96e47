"""The worker's state machine, driven through a scripted consumer edge: rebalances, lost partitions,
refused commits, drains and out-of-order outcomes on demand. Each behaviour here is also exercised
through a real broker in tests/integration or tests/chaos."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

import kqueue
from kqueue.core import names
from kqueue.core.records import RecordKind
from kqueue.transport.settle import BatchNotCommitted
from kqueue.worker.loop import Worker, WorkerOptions
from kqueue.worker.partitions import PauseReason
from tests.support.scripted_edge import ScriptedEdge, ScriptedSettler, scripted_transport
from tests.support.worker import ThreadedWorker, wait_for

Q = "jobs"
P0, P1 = (Q, 0), (Q, 1)
TIER = (names.delay_topic(Q, "1s"), 0)


@dataclass
class Rig:
    app: kqueue.App
    edge: ScriptedEdge
    settler: ScriptedSettler
    gates: dict[str, threading.Event] = field(default_factory=dict)
    ran: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def gate(self, name: str) -> threading.Event:
        return self.gates.setdefault(name, threading.Event())

    def task(self, tp: tuple[str, int], n: int, key: str | None = None, attempt: int = 1, **payload: Any) -> int:
        body = json.dumps({"n": n, **payload}).encode()
        headers = [(names.H_TYPE, b"job"), (names.H_CONTENT_TYPE, b"json"), (names.H_ID, f"task-{n}".encode()),
                   (names.H_ATTEMPT, str(attempt).encode())]
        return self.edge.append(tp[0], tp[1], body, key.encode() if key else None, headers)

    def worker(self, **options: Any) -> ThreadedWorker:
        settings: dict[str, Any] = {"group": "g", "queues": [Q], "commit_interval": 0.0, "grace": 1.0,
                                    "poll_timeout": 0.01, **options}
        return ThreadedWorker(self.app, scripted_transport(self.edge, self.settler), **settings)


@pytest.fixture()
def rig() -> Iterator[Rig]:
    app = kqueue.App("state-machine", "127.0.0.1:1")  # never contacted: the transport is scripted
    edge = ScriptedEdge()
    r = Rig(app, edge, ScriptedSettler(edge))

    @app.task(queue=Q, name="job", max_attempts=2)
    def job(payload: dict[str, Any]) -> None:
        if payload.get("gate"):
            assert r.gate(payload["gate"]).wait(10), "gate never opened"
        if payload.get("sleep"):
            time.sleep(payload["sleep"])
        if payload.get("raise") == "base":
            raise KeyboardInterrupt("a handler's BaseException")
        if payload.get("fail"):
            raise RuntimeError(f"asked to fail {payload['n']}")
        with r.lock:
            r.ran.append(payload["n"])

    yield r
    for gate in r.gates.values():
        gate.set()


def test_completions_commit_up_to_the_oldest_unsettled_task(rig: Rig) -> None:
    rig.edge.assign(P0)
    rig.task(P0, 0, "a", gate="first")
    rig.task(P0, 1, "b")
    rig.task(P0, 2, "c")
    with rig.worker() as w:
        wait_for(lambda: sorted(rig.ran) == [1, 2], timeout=5, what="the later tasks")
        time.sleep(0.05)
        assert rig.edge.committed.get(P0, 0) == 0  # offset 0 still runs: nothing past it
        rig.gate("first").set()
        wait_for(lambda: rig.edge.committed.get(P0) == 3, timeout=5, what="the commit to pass all three")
        w.stop()


def test_a_later_failure_is_written_only_with_the_commit_that_passes_it(rig: Rig) -> None:
    """Out-of-order outcomes: offset 1 is dead-lettered while offset 0 still runs. Its dead letter may
    not be durable before offset 0 is, or a crash would redeliver offset 1 and dead-letter it twice."""
    rig.edge.assign(P0)
    rig.task(P0, 0, "a", gate="first")
    rig.task(P0, 1, "b", attempt=2, fail=True)  # its last attempt: a dead letter
    with rig.worker() as w:
        wait_for(lambda: w.worker.state()["unsettled"] == 1, timeout=5, what="offset 1 to fail")
        time.sleep(0.1)  # several commit rounds pass
        assert rig.settler.written == []
        assert rig.edge.committed.get(P0, 0) == 0
        rig.gate("first").set()
        wait_for(lambda: rig.edge.committed.get(P0) == 2, timeout=5, what="the commit past both")
        w.stop()
    [(records, offsets)] = [c for c in rig.settler.commits if c[0]]
    assert [r.kind for r in records] == [RecordKind.DEAD_LETTER, RecordKind.STATUS]
    assert offsets == {P0: 2}  # in the very commit that moved the position past offset 1


def test_revoke_mid_batch_commits_what_settled_and_ignores_late_outcomes(rig: Rig) -> None:
    rig.edge.assign(P0, P1)
    rig.task(P0, 0, "a")
    rig.task(P0, 1, "b", gate="stuck")
    rig.task(P0, 2, "c")
    with rig.worker(grace=0.2) as w:
        wait_for(lambda: sorted(rig.ran) == [0, 2], timeout=5, what="the free tasks")
        rig.edge.revoke(P0)
        wait_for(lambda: P0 not in rig.edge.assigned, timeout=5, what="the revoke")
        assert rig.edge.committed[P0] == 1  # up to the stuck task, never past it
        rig.gate("stuck").set()
        rig.task(P1, 3, "d")
        wait_for(lambda: rig.edge.committed.get(P1) == 1, timeout=5, what="the other partition to go on")
        time.sleep(0.05)
        stats = w.stop()
    assert rig.edge.committed[P0] == 1  # the stuck task finished after the revoke: not ours to commit
    assert stats.completed == 3 and stats.revoked >= 1  # 0, 2 and 3; not the late one


def test_lost_partitions_drop_their_held_records_and_the_worker_goes_on(rig: Rig) -> None:
    rig.edge.assign(P0)
    rig.task(P0, 0, "a", gate="slow")
    rig.task(P0, 1, "b", fail=True)  # attempt 1 of 2: a retry, held behind offset 0
    with rig.worker() as w:
        wait_for(lambda: w.worker.state()["unsettled"] == 1, timeout=5, what="the retry decision")
        rig.edge.lose(P0)
        wait_for(lambda: w.worker.stats.lost == 1, timeout=5, what="the loss")
        assert rig.settler.written == []  # nothing of a lost partition is written
        rig.gate("slow").set()
        time.sleep(0.05)
        assert w.worker.state()["assigned"] == 0 and rig.edge.committed.get(P0, 0) == 0
        rig.edge.assign(P0)  # it comes back: from the committed offset, decided afresh
        wait_for(lambda: rig.edge.committed.get(P0) == 2, timeout=5, what="the re-run to commit")
        w.stop()
    retries = [r for r in rig.settler.written if r.kind == RecordKind.RETRY]
    assert len(retries) == 1  # written once, by the ownership that committed it
    assert rig.ran.count(0) == 2  # offset 0 ran in both ownerships: at least once, as documented


def test_tasks_of_a_lost_partition_are_never_started_after_the_loss(rig: Rig) -> None:
    rig.edge.assign(P0)
    rig.task(P0, 0, "k", gate="first")
    for n in range(1, 5):
        rig.task(P0, n, "k")  # same key: queued behind offset 0, or taken with it as one run
    with rig.worker(concurrency=1) as w:
        wait_for(lambda: w.worker.state().get("executor", {}).get("running_keys") == 1, timeout=5,
                 what="offset 0 to run")
        rig.edge.lose(P0)
        wait_for(lambda: w.worker.stats.lost == 1, timeout=5, what="the loss")
        rig.gate("first").set()
        wait_for(lambda: w.worker.state()["executor"]["running_keys"] == 0, timeout=5, what="the run to end")
        time.sleep(0.05)
        w.stop()
    assert rig.ran == [0]  # the running one finished unheeded; none of the others started
    assert rig.settler.written == [] and rig.edge.committed.get(P0, 0) == 0


def test_completed_work_above_a_slow_task_is_not_run_again_by_the_next_owner(rig: Rig) -> None:
    rig.edge.assign(P0)
    rig.task(P0, 0, "slow", gate="slow")
    rig.task(P0, 1, "b", fail=True)  # decided as a retry above the position: held, never written
    for n in range(2, 6):
        rig.task(P0, n, f"k{n}")
    with rig.worker() as w:
        wait_for(lambda: sorted(rig.ran) == [2, 3, 4, 5], timeout=5, what="the quick tasks")
        wait_for(lambda: rig.edge.notes.get(P0, "").startswith("kq1:"), timeout=5,
                 what="a commit at offset 0 naming the completed offsets above it")
        assert rig.edge.committed.get(P0, 0) == 0
        rig.edge.lose(P0)  # the worker crashed, as far as the group can tell
        wait_for(lambda: w.worker.stats.lost == 1, timeout=5, what="the loss")
        rig.gate("slow").set()
        rig.edge.assign(P0)  # the next owner starts again at the committed offset 0
        wait_for(lambda: rig.edge.committed.get(P0) == 6, timeout=5, what="the partition to commit to its end")
        stats = w.stop()
    assert sorted(rig.ran) == [0, 0, 2, 3, 4, 5]  # 0 ran in both ownerships (it never completed in time)
    assert stats.skipped == 4  # 2-5 had completed: settled without running
    retries = [r for r in rig.settler.written if r.kind == RecordKind.RETRY]
    assert len(retries) == 1  # offset 1 had no durable outcome, so it was decided again, once


def test_an_aborted_batch_is_kept_and_a_held_tier_partition_still_wakes(rig: Rig) -> None:
    rig.edge.assign(P0, TIER)
    now = int(time.time() * 1000)
    rig.edge.append(TIER[0], 0, b"{}", b"k", [(names.H_TYPE, b"job"), (names.H_ID, b"scheduled"),
                                              (names.H_TARGET, Q.encode())], timestamp_ms=now - 700)
    rig.task(P0, 1, "b", fail=True)
    rig.settler.fail_next(BatchNotCommitted("batch transaction aborted: rebalance"),
                          BatchNotCommitted("batch transaction aborted: rebalance"))
    with rig.worker() as w:
        wait_for(lambda: TIER in rig.edge.paused, timeout=5, what="the tier partition to be held")
        wait_for(lambda: any(r.kind == RecordKind.RETRY for r in rig.settler.written), timeout=5,
                 what="the retry, after two aborts")
        wait_for(lambda: any(r.kind == RecordKind.DELIVER for r in rig.settler.written), timeout=5,
                 what="the held tier record to be delivered when due")
        assert TIER not in rig.edge.paused
        w.stop()
    kinds = [r.kind for r in rig.settler.written]
    assert kinds.count(RecordKind.RETRY) == 1 and kinds.count(RecordKind.DELIVER) == 1


def test_aborts_caused_by_rebalances_never_stop_a_worker(rig: Rig) -> None:
    rig.edge.assign(P0)
    rig.settler.fail_next(*[BatchNotCommitted("aborted: generation moved") for _ in range(5)])
    with rig.worker(commit_interval=0.02) as w:
        for n in range(5):  # five aborts, each with idle time around it
            rig.task(P0, n, f"k{n}")
            time.sleep(0.1)
        wait_for(lambda: rig.edge.committed.get(P0) == 5, timeout=5, what="the batch to commit at last")
        assert w.worker.stats is not None
        w.stop()


def test_a_batch_kafka_refuses_three_times_in_a_row_stops_the_worker(rig: Rig) -> None:
    rig.edge.assign(P0)
    rig.task(P0, 0, "a", fail=True)
    rig.settler.fail_next(*[BatchNotCommitted("MSG_SIZE_TOO_LARGE", permanent=True) for _ in range(3)])
    worker = rig.worker()
    worker.__enter__()
    wait_for(lambda: not worker._thread.is_alive(), timeout=10, what="the worker to stop")
    assert isinstance(worker.error, BatchNotCommitted) and worker.error.permanent
    assert rig.edge.committed.get(P0) is None and rig.settler.written == []


def test_a_record_refused_as_too_large_goes_out_as_a_dead_letter_by_reference(rig: Rig) -> None:
    rig.edge.assign(P0)
    rig.task(P0, 0, "a", fail=True)  # its retry is the batch's first record
    rig.task(P0, 1, "b")
    real_commit = rig.settler.commit

    def refuse_retries(records: list[Any], offsets: dict[Any, int], group_metadata: Any, metadata: Any = None) -> None:
        # Refused for its size every time it is offered: the worker must not count that towards stopping.
        too_large = frozenset(i for i, r in enumerate(records) if r.kind is RecordKind.RETRY)
        if too_large:
            raise BatchNotCommitted("too large", permanent=True, too_large=too_large)
        real_commit(records, offsets, group_metadata, metadata)

    rig.settler.commit = refuse_retries  # type: ignore[method-assign]
    with rig.worker() as w:
        wait_for(lambda: rig.edge.committed.get(P0) == 2, timeout=5, what="the batch to commit")
        w.stop()
    letter, event = rig.settler.written
    headers = dict(letter.headers)
    assert (letter.kind, letter.topic, letter.value) == (RecordKind.DEAD_LETTER, names.dlq_topic(Q), None)
    assert headers[names.H_PAYLOAD_AT] == f"{Q}/0/0".encode()
    assert headers[names.H_ERROR_TYPE] == b"RecordTooLarge"
    assert b"asked to fail 0" in headers[names.H_ERROR_MESSAGE]
    assert event.kind is RecordKind.STATUS
    assert rig.ran == [1]
    assert w.worker.counts.dead_lettered == 1 and w.worker.counts.retried == 0


def test_refusals_with_a_commit_between_do_not_add_up(rig: Rig) -> None:
    rig.edge.assign(P0)
    refused = [BatchNotCommitted("MSG_SIZE_TOO_LARGE", permanent=True) for _ in range(2)]
    with rig.worker() as w:
        for n in range(3):
            rig.settler.fail_next(*refused)
            rig.task(P0, n, f"k{n}")
            wait_for(lambda n=n: rig.edge.committed.get(P0) == n + 1, timeout=5, what="a commit")  # type: ignore[misc]
        w.stop()


def test_the_drain_commits_while_a_long_task_runs(rig: Rig) -> None:
    rig.edge.assign(P0, P1)
    rig.task(P0, 0, "quick", fail=True)  # a retry decided early in the drain
    rig.task(P1, 1, "slow", sleep=0.6)
    commit_times: list[float] = []
    real_commit = rig.settler.commit

    def timed_commit(records: list[Any], offsets: dict[Any, int], group_metadata: Any, metadata: Any = None) -> None:
        real_commit(records, offsets, group_metadata, metadata)
        commit_times.append(time.monotonic())

    rig.settler.commit = timed_commit  # type: ignore[method-assign]
    with rig.worker(grace=5.0, commit_interval=0.05) as w:
        wait_for(lambda: w.worker.state()["unsettled"] == 1, timeout=5, what="the quick failure")
        stop_at = time.monotonic()
        w.stop()
        stopped = time.monotonic()
    retry_commit = next(t for (records, _), t in zip(rig.settler.commits, commit_times, strict=True) if records)
    assert retry_commit < stopped - 0.2  # the retry went out while the slow task still ran
    assert rig.edge.committed == {P0: 1, P1: 1} and stopped - stop_at >= 0.4


def test_the_drain_leaves_what_did_not_start_within_the_grace_uncommitted(rig: Rig) -> None:
    rig.edge.assign(P0)
    rig.task(P0, 0, "k", gate="never")
    rig.task(P0, 1, "k")
    rig.task(P0, 2, "k")
    with rig.worker(grace=0.3, concurrency=1) as w:
        wait_for(lambda: w.worker.state()["unsettled"] == 3, timeout=5, what="the batch")
        started = time.monotonic()
        w.stop()
        assert time.monotonic() - started < 2
    assert rig.ran == [] and rig.edge.committed.get(P0, 0) == 0  # all three are redelivered


def test_a_handlers_base_exception_is_its_failure_and_the_key_moves_on(rig: Rig) -> None:
    rig.edge.assign(P0)
    rig.task(P0, 0, "k", **{"raise": "base"})
    rig.task(P0, 1, "k")
    with rig.worker(concurrency=1) as w:
        wait_for(lambda: rig.edge.committed.get(P0) == 2, timeout=5, what="both settled")
        stats = w.stop()
    assert rig.ran == [1] and stats.retried == 1
    [retry] = [r for r in rig.settler.written if r.kind == RecordKind.RETRY]
    assert dict(retry.headers)[names.H_ERROR_TYPE] == b"KeyboardInterrupt"


def test_releasing_backpressure_never_resumes_a_partition_held_for_another_reason(rig: Rig) -> None:
    rig.edge.assign(P0, TIER)
    now = int(time.time() * 1000)
    rig.edge.append(TIER[0], 0, b"{}", None, [(names.H_TYPE, b"job"), (names.H_TARGET, Q.encode())],
                    timestamp_ms=now + 60_000)  # due in a minute: held
    for n in range(4):
        rig.task(P0, n, f"k{n}", gate="open")
    with rig.worker(max_inflight=2, concurrency=4) as w:
        wait_for(lambda: P0 in rig.edge.paused and TIER in rig.edge.paused, timeout=5, what="both paused")
        table = w.worker._table
        assert table.get(P0).pauses == {PauseReason.BACKPRESSURE}  # type: ignore[union-attr]
        assert table.get(TIER).pauses == {PauseReason.ROUTER_HOLD}  # type: ignore[union-attr]
        rig.gate("open").set()
        wait_for(lambda: P0 not in rig.edge.paused, timeout=5, what="backpressure to lift")
        assert TIER in rig.edge.paused  # still held: backpressure was never its reason
        w.stop()


class Recorder(kqueue.Middleware):
    def __init__(self, name: str, calls: list[str], reject: bool = False) -> None:
        self.name, self.calls, self.reject = name, calls, reject

    def before_run(self, ctx: kqueue.TaskContext) -> None:
        self.calls.append(f"{self.name}.before:{ctx.offset}")
        if self.reject and ctx.offset == 1:
            raise kqueue.Reject("refused by middleware")

    def after_run(self, ctx: kqueue.TaskContext, error: BaseException | None, seconds: float) -> None:
        self.calls.append(f"{self.name}.after:{ctx.offset}:{type(error).__name__ if error else 'ok'}")

    def on_settle(self, event: kqueue.SettleEvent) -> None:
        self.calls.append(f"{self.name}.settle:{event.offset}:{event.outcome}")
        assert event.run_seconds is not None and event.started_at is not None

    def on_commit(self, event: kqueue.CommitEvent) -> None:
        self.calls.append(f"{self.name}.commit:{sorted(event.offsets.values())}")

    def on_partitions(self, event: kqueue.PartitionEvent) -> None:
        self.calls.append(f"{self.name}.{event.kind}:{len(event.partitions)}")


class Broken(kqueue.Middleware):
    def on_settle(self, event: kqueue.SettleEvent) -> None:
        raise RuntimeError("a buggy metrics hook")


def test_middleware_hooks_run_in_order_and_a_broken_one_changes_nothing(rig: Rig) -> None:
    calls: list[str] = []
    rig.app.add_middleware(Recorder("outer", calls))
    rig.app.add_middleware(Broken())
    rig.app.add_middleware(Recorder("inner", calls, reject=True))
    rig.edge.assign(P0)
    rig.task(P0, 0, "k")
    rig.task(P0, 1, "k")  # refused by a before_run hook: dead-lettered without running
    with rig.worker(concurrency=1) as w:
        wait_for(lambda: rig.edge.committed.get(P0) == 2, timeout=5, what="both settled")
        w.stop()
    assert rig.ran == [0]
    run_calls = [c for c in calls if ".before" in c or ".after" in c]
    assert run_calls == ["outer.before:0", "inner.before:0", "inner.after:0:ok", "outer.after:0:ok",
                         "outer.before:1", "inner.before:1", "inner.after:1:Reject", "outer.after:1:Reject"]
    assert "outer.settle:0:completed" in calls and "inner.settle:1:dead-lettered" in calls
    assert calls.index("outer.settle:1:dead-lettered") < calls.index("outer.commit:[2]")
    assert calls[0] == "outer.assigned:1" and calls[-2:] == ["outer.revoked:1", "inner.revoked:1"]


def test_a_stop_asked_for_during_start_up_ends_the_run_before_it_reaches_kafka(rig: Rig) -> None:
    reached: list[str] = []

    def transport(*_: Any) -> Any:
        reached.append("kafka")
        raise AssertionError("must not connect")

    w = Worker(rig.app, WorkerOptions(group="g"), transport)
    w.request_stop()
    assert w.run() == w.stats and reached == []


def test_records_held_while_commits_fail_count_towards_backpressure(rig: Rig) -> None:
    rig.edge.assign(P0)
    for n in range(40):
        rig.task(P0, n, f"k{n}", fail=True)  # every one routes a retry, held until a commit succeeds
    rig.settler.fail_next(*[BatchNotCommitted("coordinator not available") for _ in range(10_000)])
    with rig.worker(max_inflight=2, batch_size=2, commit_interval=0.01) as w:
        wait_for(lambda: w.worker.state()["held_for_commit"] >= 8, timeout=5, what="held retries")
        time.sleep(0.3)  # many commit rounds, all failing
        assert P0 in rig.edge.paused and w.worker.state()["held_for_commit"] <= 16 + 2  # bound + a batch
        assert rig.settler.written == []
        rig.settler.failures.clear()  # the outage ends
        wait_for(lambda: rig.edge.committed.get(P0) == 40, timeout=5, what="everything to commit")
        w.stop()
    assert [r.kind for r in rig.settler.written].count(RecordKind.RETRY) == 40


class StuckSettler:
    """A settler whose commit blocks inside the client until released."""

    transactional = True

    def __init__(self, sent: bool) -> None:
        self.release = threading.Event()
        self.sent = sent  # whether the stuck commit was already sent (then it cannot be given up)
        self.abandoned = 0

    def commit(self, records: Any, offsets: Any, group_metadata: Any, metadata: Any = None) -> None:
        self.release.wait(10)

    def abandon(self) -> bool:
        self.abandoned += not self.sent
        return not self.sent

    def close(self) -> None: ...


def test_a_commit_stuck_after_it_was_sent_lands_as_a_settlement_error() -> None:
    from kqueue.transport.settle import SettlementError
    from kqueue.worker.checkpoint import CommitBatch
    from kqueue.worker.committer import BackgroundCommitter

    settler = StuckSettler(sent=True)
    committer = BackgroundCommitter(settler, stuck_after=0.3, abandon_after=0.1)
    committer.start(CommitBatch(), "metadata")
    assert committer.landed() is None and committer.busy  # still flying
    started = time.monotonic()
    landed = committer.landed(wait=True)
    assert landed is not None and isinstance(landed[1], SettlementError)
    assert 0.2 < time.monotonic() - started < 2 and not committer.busy and committer.abandoned == 0
    settler.release.set()


def test_a_commit_stuck_before_it_was_sent_is_given_up_and_the_batch_kept() -> None:
    from kqueue.worker.checkpoint import CommitBatch
    from kqueue.worker.committer import BackgroundCommitter

    settler = StuckSettler(sent=False)
    committer = BackgroundCommitter(settler, stuck_after=5, abandon_after=0.2)
    committer.start(CommitBatch(), "metadata")
    time.sleep(0.05)
    assert committer.landed() is None  # young: still flying
    time.sleep(0.2)
    landed = committer.landed()  # without waiting: the loop notices on its next turn
    assert landed is not None and isinstance(landed[1], BatchNotCommitted) and not landed[1].permanent
    assert settler.abandoned == 1 and committer.abandoned == 1 and not committer.busy
    committer.start(CommitBatch(), "metadata")  # the next flight starts afresh
    settler.release.set()
    landed = committer.landed(wait=True)
    assert landed is not None and landed[1] is None


def test_commits_stuck_in_the_client_again_and_again_recycle_the_worker(rig: Rig,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import kqueue.worker.committer as committer_module
    import kqueue.worker.loop as loop_module

    monkeypatch.setattr(committer_module, "ABANDON_AFTER", 0.05)
    monkeypatch.setattr(loop_module, "MAX_ABANDONED_COMMITS", 2)
    release = threading.Event()
    real_commit = rig.settler.commit

    def stuck(records: list[Any], offsets: dict[Any, int], group_metadata: Any, metadata: Any = None) -> None:
        release.wait(10)  # blocked inside the client, before its commit was sent
        real_commit(records, offsets, group_metadata, metadata)

    rig.settler.commit = stuck  # type: ignore[method-assign]
    rig.settler.abandonable = True
    rig.edge.assign(P0)
    rig.task(P0, 0, "a")
    worker = rig.worker(grace=0.2)
    worker.__enter__()
    try:
        wait_for(lambda: not worker._thread.is_alive(), timeout=10, what="the worker to stop itself")
        assert rig.settler.abandoned >= 2
        assert worker.worker.recycle_reason is not None and "stuck inside the Kafka client" in \
            worker.worker.recycle_reason
    finally:
        release.set()


def test_ticks_report_busy_slots_partitions_and_membership_while_running_and_draining(rig: Rig) -> None:
    ticks: list[kqueue.TickEvent] = []

    class Ticks(kqueue.Middleware):
        def on_tick(self, event: kqueue.TickEvent) -> None:
            ticks.append(event)

    rig.app.add_middleware(Ticks())
    rig.edge.assign(P0, P1)
    rig.task(P0, 0, "a", gate="held")
    with rig.worker(concurrency=2, instance_id="pod-7", grace=5.0) as worker:
        wait_for(lambda: any(t.busy == 1 for t in ticks), 10, "a tick with the held task running")
        busy = next(t for t in ticks if t.busy == 1)
        assert busy.worker_id == "pod-7" and busy.group == "g" and busy.concurrency == 2
        assert busy.member_id == "scripted-member" and busy.unsettled == 1 and not busy.stopping
        assert set(busy.partitions) >= {P0, P1}
        worker.worker.request_stop()
        # Draining waits on the held task: the loop still ticks, saying it is stopping.
        wait_for(lambda: ticks[-1].stopping, 10, "a tick while draining")
        rig.gate("held").set()
        worker.stop()
    assert rig.ran == [0]


def test_claims_that_cannot_be_read_hold_their_partition_and_are_read_again(
        rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    """The claims of P0 (Q.dedup) cannot be read twice: P0 is paused and sought back to its first
    keyed task while P1 goes on; the third read works and every task runs once, the keyed one with
    its claim written. Before, the worker stopped."""
    from kqueue.worker import dedup_gate

    monkeypatch.setattr(dedup_gate, "RETRY_AFTER", (0.2, 0.4))
    reads: list[tuple[int, float]] = []

    def flaky(topic: str, partition: int) -> dict[str, Any]:
        reads.append((partition, time.monotonic()))
        if partition == 0 and sum(1 for p, _ in reads if p == 0) <= 2:
            raise RuntimeError("coordinator not available")
        return {}

    def keyed_task(tp: tuple[str, int], n: int) -> int:
        headers = [(names.H_TYPE, b"job"), (names.H_CONTENT_TYPE, b"json"), (names.H_ID, f"task-{n}".encode()),
                   (names.H_IDEMPOTENCY_KEY, f"order-{n}".encode())]
        return rig.edge.append(tp[0], tp[1], json.dumps({"n": n}).encode(), b"k", headers)

    rig.edge.assign(P0, P1)
    rig.task(P0, 0, "k")  # no key: runs at once
    assert keyed_task(P0, 1) == 1
    rig.task(P0, 2, "k")  # after the keyed one: waits with it
    rig.task(P1, 3, "other")
    with rig.worker(claim_loader=flaky) as w:
        wait_for(lambda: {0, 3} <= set(rig.ran), timeout=5, what="the unkeyed tasks")
        assert ("seek", (P0, 1)) in rig.edge.calls  # held at the keyed task
        assert 1 not in rig.ran and 2 not in rig.ran
        wait_for(lambda: rig.edge.committed.get(P0) == 3, timeout=10, what="P0 once its claims are read")
        w.stop()
    assert sorted(rig.ran) == [0, 1, 2, 3]
    p0_reads = [at for p, at in reads if p == 0]
    assert len(p0_reads) == 3
    assert p0_reads[1] - p0_reads[0] >= 0.15 and p0_reads[2] - p0_reads[1] >= 0.3  # backing off (ms clock)
    claims = [r for r in rig.settler.written if r.kind is RecordKind.CLAIM]
    assert len(claims) == 1 and claims[0].topic == names.dedup_topic(Q, "")
    assert w.worker.stats.dead_lettered == 0 and w.worker.stats.completed == 4
