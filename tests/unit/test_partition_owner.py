"""The partition owner through the scripted edge: a re-assignment while old work runs, tier records
under failing commits, one stuck task ahead of many, and partitions sharing a worker fairly. Each is
also exercised through a real broker (tests/integration/test_partition_owner.py)."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

import kqueue
from kqueue.core import completed, names
from kqueue.core.records import OutRecord, RecordKind
from kqueue.transport.settle import BatchNotCommitted
from kqueue.worker.checkpoint import Checkpoint
from kqueue.worker.partition_table import PartitionTable
from kqueue.worker.partitions import PauseReason
from tests.support.scripted_edge import ScriptedEdge, ScriptedSettler, scripted_transport
from tests.support.worker import ThreadedWorker, wait_for

Q = "jobs"
P0, P1 = (Q, 0), (Q, 1)
TIER = (names.delay_topic(Q, "1s"), 0)


class Rig:
    def __init__(self) -> None:
        self.app = kqueue.App("owner", "127.0.0.1:1")  # never contacted: the transport is scripted
        self.edge = ScriptedEdge()
        self.settler = ScriptedSettler(self.edge)
        self.gates: dict[str, threading.Event] = {}
        self.ran: list[tuple[int, int]] = []  # (partition, n) in the order they finished
        self.running: set[int] = set()
        self.overlaps: list[tuple[int, int]] = []  # unique tasks of one key seen running together
        self.lock = threading.Lock()
        self.runs: Counter[int] = Counter()

        @self.app.task(queue=Q, name="job", max_attempts=2)
        def job(payload: dict[str, Any], ctx: kqueue.TaskContext) -> None:
            self._run(payload, ctx)

        @self.app.task(queue=Q, name="once", unique_for=60)
        def once(payload: dict[str, Any], ctx: kqueue.TaskContext) -> None:
            with self.lock:
                if self.running:
                    self.overlaps.append((min(self.running), payload["n"]))
                self.running.add(payload["n"])
            try:
                self._run(payload, ctx)
            finally:
                with self.lock:
                    self.running.discard(payload["n"])

    def _run(self, payload: dict[str, Any], ctx: kqueue.TaskContext) -> None:
        with self.lock:
            self.runs[payload["n"]] += 1
            attempt_gate = payload.get(f"gate{self.runs[payload['n']]}") or payload.get("gate")
        if attempt_gate:
            assert self.gate(attempt_gate).wait(10), "gate never opened"
        if payload.get("sleep"):
            time.sleep(payload["sleep"])
        if payload.get("reject"):
            raise kqueue.Reject("rejected on purpose")
        with self.lock:
            self.ran.append((ctx.partition, payload["n"]))

    def gate(self, name: str) -> threading.Event:
        return self.gates.setdefault(name, threading.Event())

    def task(self, tp: tuple[str, int], n: int, key: str | None = None, task_type: str = "job",
             headers: dict[str, str] | None = None, **payload: Any) -> int:
        body = json.dumps({"n": n, **payload}).encode()
        extra = [(k, v.encode()) for k, v in (headers or {}).items()]
        all_headers = [(names.H_TYPE, task_type.encode()), (names.H_CONTENT_TYPE, b"json"),
                       (names.H_ID, f"task-{n}".encode()), *extra]
        return self.edge.append(tp[0], tp[1], body, key.encode() if key else None, all_headers)

    def worker(self, **options: Any) -> ThreadedWorker:
        settings: dict[str, Any] = {"group": "g", "queues": [Q], "commit_interval": 0.0, "grace": 1.0,
                                    "poll_timeout": 0.01, **options}
        return ThreadedWorker(self.app, scripted_transport(self.edge, self.settler),
                              claim_loader=self.claims_in_kafka, **settings)

    def claims_in_kafka(self, topic: str, partition: int) -> dict[str, Any]:
        """What Q.dedup holds: the claims the settler has written (a tombstone forgets one)."""
        from kqueue.core.dedup import Claim

        claims: dict[str, Claim] = {}
        for record in self.settler.written:
            if record.kind is RecordKind.CLAIM and record.partition == partition and record.key is not None:
                if record.value is None:
                    claims.pop(record.key.decode(), None)
                else:
                    claims[record.key.decode()] = Claim.decode(record.value)
        return claims


def _pauses(w: ThreadedWorker, tp: tuple[str, int]) -> set[PauseReason]:
    table: PartitionTable | None = getattr(w.worker, "_table", None)
    owner = table.get(tp) if table is not None else None
    return set(owner.pauses) if owner is not None else set()


@pytest.fixture()
def rig() -> Iterator[Rig]:
    r = Rig()
    yield r
    for gate in r.gates.values():
        gate.set()


def test_a_stale_ownership_never_frees_the_unique_claim_of_the_next_one(rig: Rig) -> None:
    """P0 is lost while its unique task runs, and assigned to this worker again: the task runs again
    (a new ownership). When the old run ends it must not free the key: a second task of that key,
    fetched after, is a duplicate while the re-run still runs. Before, it ran beside the re-run."""
    unique = {names.H_UNIQUE_KEY: "acct-7", names.H_UNIQUE_FOR: "60"}
    rig.edge.assign(P0)
    rig.task(P0, 0, "a", "once", unique, gate1="old-run", gate2="re-run")
    with rig.worker(concurrency=4) as w:
        wait_for(lambda: rig.runs[0] == 1, timeout=5, what="the first run")
        first_owner = w.worker._table.get(P0)
        rig.edge.lose(P0)
        rig.edge.assign(P0)
        # Re-delivered to the new ownership, which claims the key again; the re-run waits in the
        # key's lane behind the stale run.
        wait_for(lambda: (o := w.worker._table.get(P0)) is not None and o is not first_owner
                 and o.outstanding == 1, timeout=5, what="the re-delivery")
        rig.gate("old-run").set()  # the stale run ends
        wait_for(lambda: rig.runs[0] == 2, timeout=5, what="the re-run in the new ownership")
        rig.task(P0, 1, "b", "once", unique)  # another record key, the same unique key
        wait_for(lambda: rig.edge.positions.get(P0) == 2, timeout=5, what="the second task fetched")
        time.sleep(0.2)
        assert rig.runs[1] == 0 and rig.overlaps == []  # a duplicate: never started
        rig.gate("re-run").set()
        wait_for(lambda: rig.edge.committed.get(P0) == 2, timeout=5, what="both settled")
        w.stop()
    duplicates = [r for r in rig.settler.written if r.kind is RecordKind.DUPLICATE]
    assert len(duplicates) == 1 and rig.runs[1] == 0


def test_tier_records_held_while_commits_fail_stay_bounded(rig: Rig) -> None:
    """A due tier backlog while every commit fails: before, all of it was held (5,000 records against
    a bound of 16); now the tier partition pauses at the bound, and everything goes out once commits
    work again, no commit larger than the checkpoint's cap."""
    rig.edge.assign(P0, TIER)
    past = int(time.time() * 1000) - 60_000
    for n in range(3000):
        rig.edge.append(TIER[0], 0, json.dumps({"n": n}).encode(), None,
                        [(names.H_TYPE, b"job"), (names.H_CONTENT_TYPE, b"json"), (names.H_TARGET, Q.encode())],
                        timestamp_ms=past)
    rig.settler.fail_next(*[BatchNotCommitted("coordinator not available") for _ in range(100_000)])
    with rig.worker(max_inflight=2, batch_size=50, commit_interval=0.01) as w:
        wait_for(lambda: w.worker.state()["held_for_commit"] >= 16, timeout=5, what="held tier moves")
        wait_for(lambda: PauseReason.COMMITS_BEHIND in _pauses(w, TIER), timeout=5, what="the tier partition to pause")
        time.sleep(0.3)  # many failing commit rounds
        assert w.worker.state()["held_for_commit"] <= 16 + 50  # the bound and one batch
        assert rig.settler.written == []
        rig.settler.failures.clear()  # the outage ends
        wait_for(lambda: rig.edge.committed.get(TIER) == 3000, timeout=20, what="the backlog to move")
        w.stop()
    delivered = [r for r in rig.settler.written if r.kind is RecordKind.DELIVER]
    assert len(delivered) == 3000 and {r.topic for r in delivered} == {Q}


def test_a_commit_never_carries_more_than_the_cap(rig: Rig) -> None:
    """Held records go out over several commits, each at most `max_records`, positions in step."""
    table = PartitionTable(rig.edge, lambda topic: False)
    (owner,) = table.assign([P0])
    for offset in range(5000):
        owner.track(offset)
        owner.route(offset, [OutRecord(RecordKind.RETRY, "t", b"v", None, [], 0)])
    checkpoint = Checkpoint(table, rig.settler, max_records=2000)
    sizes = []
    while (result := checkpoint.commit("scripted-group")) is not None:
        sizes.append((result.records, result.offsets[P0]))
    assert sizes == [(2000, 2000), (2000, 4000), (1000, 5000)]
    assert len(rig.settler.written) == 5000


def test_one_stuck_task_pauses_its_partition_at_max_ahead_and_memory_stays_bounded(
        rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before, every later offset stayed in the watermark and the completed set (15,000 each after
    15,000 completions). Now the partition pauses MAX_AHEAD past its commit position and resumes
    when the stuck task settles; nothing is lost."""
    monkeypatch.setattr(completed, "MAX_AHEAD", 100)
    rig.edge.assign(P0, P1)
    rig.task(P0, 0, "stuck", gate="stuck")
    for n in range(1, 1001):
        rig.task(P0, n, f"k{n}", sleep=0.001)
    rig.task(P1, 5000, "other")
    with rig.worker(batch_size=20, concurrency=4) as w:
        wait_for(lambda: PauseReason.AHEAD in _pauses(w, P0), timeout=5, what="P0 to pause ahead")
        time.sleep(0.3)
        owner = w.worker._table.get(P0)
        assert owner is not None
        done = len(rig.ran)
        assert 100 <= owner.ahead() <= 100 + 20 and done <= 100 + 20 + 1  # bounded: the cap and one batch
        assert len(owner.completed_above) <= 100 + 20
        assert (1, 5000) in rig.ran  # the other partition went on
        rig.gate("stuck").set()
        wait_for(lambda: rig.edge.committed.get(P0) == 1001, timeout=10, what="all of P0")
        w.stop()
    assert sorted(n for p, n in rig.ran if p == 0) == list(range(1001))


def test_a_backlog_on_one_partition_does_not_crowd_out_the_others(rig: Rig) -> None:
    """P0's backlog comes first in every fetch. Before, the worker handed out whole batches of it and
    served P1 only once P0 was drained; now, while the worker holds more than half a second of work,
    a partition stops fetching at its share of the worker's unsettled tasks (over it by a batch at
    most), and the executor takes partitions in turn, so P1 runs long before P0 is drained."""
    for n in range(150):
        rig.task(P0, n, f"a{n}", sleep=0.05)
    for n in range(150, 300):
        rig.task(P1, n, f"b{n}", sleep=0.05)
    rig.edge.assign(P0, P1)
    with rig.worker(batch_size=20, max_inflight=80, concurrency=4) as w:
        wait_for(lambda: len(rig.ran) >= 300, timeout=30, what="everything")
        w.stop()
    order = [p for p, _ in rig.ran]
    assert order.index(1) < 75, f"P1's first task finished after {order.index(1)} of P0's"
    middle = order[100:200]
    assert middle.count(1) >= 33, f"P1 got {middle.count(1)} of the middle 100 completions"


def test_cheap_tasks_run_and_are_noted_beside_a_slow_one_after_cheap_work(rig: Rig) -> None:
    """A mixed load on one partition, after a warm-up of cheap tasks: a slow task of one key does not
    hold back the cheap tasks of other keys (they start on idle threads at once), the commit stays at
    the slow task, and the cheap ones above it are named in the commit metadata."""
    from kqueue.core.completed import decode as decode_completed

    rig.edge.assign(P0)
    for n in range(300):
        rig.task(P0, n, f"warm{n}")  # cheap: the executor learns it is in a cheap phase
    with rig.worker(concurrency=8) as w:
        wait_for(lambda: rig.edge.committed.get(P0) == 300, timeout=5, what="the warm-up")
        rig.task(P0, 300, "slow", gate="slow")
        for n in range(301, 351):
            rig.task(P0, n, f"cheap{n}")
        started = time.monotonic()
        wait_for(lambda: sum(1 for _, n in rig.ran if n > 300) == 50, timeout=5, what="the cheap tasks")
        assert time.monotonic() - started < 1.0
        wait_for(lambda: bool(rig.edge.notes.get(P0)), timeout=5, what="a commit naming them")
        assert rig.edge.committed[P0] == 300  # held at the slow task
        assert decode_completed(300, rig.edge.notes[P0]) == set(range(301, 351))
        rig.gate("slow").set()
        wait_for(lambda: rig.edge.committed.get(P0) == 351, timeout=5, what="everything")
        w.stop()


class RefusingSettler(ScriptedSettler):
    """Kafka refusing every record for one topic, one by one (as a compacted topic refuses a record
    without a key), until told to stop."""

    refuse_topic: str | None = None

    def commit(self, records: list[OutRecord], offsets: dict[tuple[str, int], int], group_metadata: Any,
               metadata: dict[tuple[str, int], str] | None = None) -> None:
        refused: dict[int, str | None] = {i: "INVALID_RECORD: no key for a compacted topic"
                                          for i, r in enumerate(records) if r.topic == self.refuse_topic}
        if refused:
            raise BatchNotCommitted("refused", permanent=True, refused=refused)
        super().commit(records, offsets, group_metadata, metadata)


def test_a_record_kafka_refuses_holds_only_its_own_partition(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before, a record Kafka refused for anything but its size failed the one transaction of every
    partition, three times, and the worker stopped. Now it is replaced by its dead letter by
    reference; refused again, its partition alone is held (records kept) and the others commit."""
    from kqueue.worker import checkpoint

    monkeypatch.setattr(checkpoint, "ISOLATE_FOR", 0.5)
    settler = RefusingSettler(rig.edge)
    settler.refuse_topic = names.dlq_topic(Q)
    rig.settler = settler
    rig.edge.assign(P0, P1)
    rig.task(P0, 0, "a", reject=True)  # dead-lettered at once: its letter is refused, then its reference
    for n in range(1, 11):
        rig.task(P1, n, f"k{n}")
    with rig.worker(commit_interval=0.01) as w:
        wait_for(lambda: rig.edge.committed.get(P1) == 10, timeout=5, what="P1 to commit")
        wait_for(lambda: PauseReason.REFUSED in _pauses(w, P0), timeout=5, what="P0 to be held")
        # Nothing past the refused record (a commit at 0, made before it settled, passes nothing).
        assert rig.edge.committed.get(P0, 0) == 0 and w.error is None  # the worker goes on
        for n in range(11, 16):
            rig.task(P1, n, f"k{n}")
        wait_for(lambda: rig.edge.committed.get(P1) == 15, timeout=5, what="P1 to go on committing")
        settler.refuse_topic = None  # the topic is mended
        wait_for(lambda: rig.edge.committed.get(P0) == 1, timeout=5, what="P0 once Kafka takes it")
        assert PauseReason.REFUSED not in _pauses(w, P0)
        w.stop()
    [letter] = [r for r in rig.settler.written if r.kind is RecordKind.DEAD_LETTER]
    assert letter.value is None and dict(letter.headers)[names.H_PAYLOAD_AT] == f"{Q}/0/0".encode()


def test_completing_a_run_of_offsets_at_once_is_completing_each_and_a_dead_owner_completes_none() -> None:
    table = PartitionTable(ScriptedEdge(), lambda topic: False)
    one, many = table.assign([("q", 0), ("q", 1)])
    for owner in (one, many):
        for offset in (5, 6, 7, 9):
            owner.track(offset)
    for offset in (5, 6, 9):
        assert one.complete(offset)
    assert many.complete_many([5, 6, 9]) == 3
    assert many.watermark.position() == one.watermark.position() == 7
    assert many.completed_above == one.completed_above
    table.remove([("q", 1)])
    assert many.complete_many([7]) == 0  # the ownership is over: nothing settles
    assert many.watermark.position() == 7
