"""The partition owner through a real broker: one stuck task ahead of 50,000 later ones, and a
backlog spread over several partitions of one worker."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from typing import Any

import pytest

import kqueue
from kqueue.core.completed import MAX_AHEAD
from kqueue.core.completed import decode as decode_completed
from kqueue.worker.partitions import PauseReason
from tests.support.kafka import Kafka, unique
from tests.support.worker import ThreadedWorker, wait_for


@pytest.mark.slow
def test_one_stuck_task_and_50000_later_ones_keep_memory_flat_and_lose_nothing(kafka: Kafka) -> None:
    """Before, every completion above the stuck task stayed in the watermark and the completed set
    (and was re-encoded every commit). Now the partition pauses MAX_AHEAD past its position, the
    whole completed map fits the commit metadata, and everything runs once the task is freed."""
    app = kqueue.App("stuck", kafka.bootstrap, partitions=1)
    queue = unique("stuck")
    release = threading.Event()
    done: Counter[int] = Counter()
    lock = threading.Lock()

    @app.task(queue=queue)
    def work(payload: dict[str, Any]) -> None:
        if payload.get("stuck"):
            assert release.wait(120), "never released"
        with lock:
            done[payload["n"]] += 1

    total = 50_000
    work.enqueue({"n": 0, "stuck": True}, key="stuck")
    for n in range(1, total + 1):
        work.enqueue({"n": n}, key=f"k{n % 997}")
    app.flush()
    batch = 500
    with ThreadedWorker(app, group=unique("g"), batch_size=batch, concurrency=8) as worker:
        wait_for(lambda: hasattr(worker.worker, "_table"), timeout=30, what="the worker to start")
        table = lambda: worker.worker._table  # noqa: E731
        wait_for(lambda: (o := table().get((queue, 0))) is not None and PauseReason.AHEAD in o.pauses,
                 timeout=60, what="the partition to pause ahead of its stuck task")
        settled = -1
        while settled != len(done):  # until nothing more completes
            settled = len(done)
            time.sleep(1.0)
        owner = table().get((queue, 0))
        assert owner is not None
        assert MAX_AHEAD - batch <= len(done) <= MAX_AHEAD + batch, len(done)
        assert owner.ahead() <= MAX_AHEAD + batch and len(owner.completed_above) <= MAX_AHEAD + batch
        wait_for(lambda: owner.noted != "", timeout=10, what="a commit with the completed map")
        assert len(decode_completed(owner.committed or 0, owner.noted)) >= len(done) - batch  # it fits whole
        release.set()
        wait_for(lambda: len(done) == total + 1, timeout=120, what="every task")
        wait_for(lambda: owner.committed == total + 1 or (
            (o := table().get((queue, 0))) is not None and o.committed == total + 1), timeout=30,
                 what="the final commit")
        worker.stop()
    assert set(done) == set(range(total + 1)) and max(done.values()) == 1


def test_a_backlog_on_several_partitions_is_served_side_by_side(kafka: Kafka) -> None:
    """Before, a worker ran one partition's backlog at a time (partition 0 for 27 s, then 1, ...).
    Now, in every half-second window, each partition with work left completes tasks, and none gets
    less than half of the average share."""
    partitions = 3
    app = kqueue.App("fair", kafka.bootstrap, partitions=partitions)
    queue = unique("fair")
    finished: list[tuple[float, int]] = []
    lock = threading.Lock()

    @app.task(queue=queue)
    def work(payload: dict[str, Any], ctx: kqueue.TaskContext) -> None:
        time.sleep(0.01)
        with lock:
            finished.append((time.monotonic(), ctx.partition))

    total = 1500
    for n in range(total):
        work.enqueue({"n": n}, key=f"key-{n % 200}")
    app.flush()
    with ThreadedWorker(app, group=unique("g"), concurrency=8) as worker:
        wait_for(lambda: len(finished) >= total, timeout=60, what="the backlog")
        worker.stop()
    start = finished[0][0]
    last_of = {p: max(t for t, q in finished if q == p) for p in range(partitions)}
    window = 0.5
    for w in range(int((finished[-1][0] - start) / window)):
        lo, hi = start + w * window, start + (w + 1) * window
        busy = [p for p in range(partitions) if last_of[p] > hi]  # work left through the window
        if len(busy) < 2:
            break
        counts = Counter(p for t, p in finished if lo <= t < hi and p in busy)
        average = sum(counts.values()) / len(busy)
        shares = {p: counts.get(p, 0) for p in busy}
        assert min(shares.values()) >= average / 2, f"window {w}: completions per partition {shares}"


def test_a_tier_record_aimed_outside_its_queue_is_dead_lettered_and_the_rest_commit(kafka: Kafka) -> None:
    """A foreign (or broken) producer wrote a delay-tier record whose kq-target names a topic that
    does not exist. Before, the worker's one transaction for all its partitions aborted on it forever,
    so no partition committed; now that record is dead-lettered with the reason and the rest commit."""
    from confluent_kafka import Producer

    from kqueue.core import names
    from kqueue.core.headers import header_map

    app = kqueue.App("target", kafka.bootstrap, partitions=2)
    queue = unique("target")
    ran: list[int] = []

    @app.task(queue=queue)
    def work(payload: dict[str, Any]) -> None:
        ran.append(payload["n"])

    app.ensure_queue(queue)
    producer = Producer({"bootstrap.servers": kafka.bootstrap})
    producer.produce(names.delay_topic(queue, "1s"), b'{"n": -1}', b"bad", partition=0, headers=[
        (names.H_TYPE, b"work"), (names.H_CONTENT_TYPE, b"json"), (names.H_ID, b"misrouted"),
        (names.H_TARGET, b"no-such-topic-anywhere")])
    assert producer.flush(10) == 0
    for n in range(20):
        work.enqueue({"n": n}, key=f"k{n}")
    app.flush()
    with ThreadedWorker(app, group=unique("g"), concurrency=4) as worker:
        [letter] = kafka.read_all(names.dlq_topic(queue), expected=1, timeout=60)
        wait_for(lambda: len(ran) == 20, timeout=30, what="the tasks")
        lanes = [(queue, 0), (queue, 1)]
        wait_for(lambda: sum((o.committed or 0) for tp in lanes if (o := worker.worker._table.get(tp))) == 20,
                 timeout=30, what="both partitions to commit")
        worker.stop()
    headers = header_map(letter.headers())
    assert headers[names.H_ERROR_TYPE] == "InvalidTarget" and "no-such-topic-anywhere" in headers[names.H_ERROR_MESSAGE]
    assert headers[names.H_ID] == "misrouted" and letter.value() == b'{"n": -1}'


@pytest.mark.slow
def test_a_partition_handed_over_under_a_backlog_starts_within_a_second(kafka: Kafka) -> None:
    """Two workers share a backlog; one stops. Before, its partitions waited behind the survivor's
    own backlog (60 s in a run with 20 ms tasks); now the survivor starts them within a second of
    their assignment."""
    queue = unique("handover")
    finished: list[tuple[float, str, int]] = []
    lock = threading.Lock()

    def app_for(name: str) -> kqueue.App:
        app = kqueue.App(name, kafka.bootstrap, partitions=4)

        @app.task(queue=queue, name="work")
        def work(payload: dict[str, Any], ctx: kqueue.TaskContext) -> None:
            time.sleep(0.02)
            with lock:
                finished.append((time.monotonic(), name, ctx.partition))

        return app

    first, second = app_for("first"), app_for("second")
    sender = first.tasks[(queue, "work")]
    for n in range(6000):
        sender.enqueue({"n": n}, key=f"key-{n % 200}")
    first.flush()
    group = unique("g")
    with ThreadedWorker(first, group=group, concurrency=8) as survivor:
        leaver = ThreadedWorker(second, group=group, concurrency=8, grace=2.0).__enter__()
        def mains(w: ThreadedWorker) -> set[int]:
            return {p for t, p in w.worker.assignment() if t == queue}

        wait_for(lambda: len(mains(survivor)) == 2 and len(mains(leaver)) == 2, timeout=60,
                 what="two partitions each")
        time.sleep(2.0)
        moved = mains(leaver)
        leaver.stop()
        wait_for(lambda: len(mains(survivor)) == 4, timeout=60, what="the hand-over")
        assigned_at = time.monotonic()
        wait_for(lambda: any(t > assigned_at and w == "first" and p in moved for t, w, p in finished),
                 timeout=30, what="a moved partition's first task on the survivor")
        survivor.stop()
    started = min(t for t, w, p in finished if t > assigned_at and w == "first" and p in moved)
    assert started - assigned_at < 1.0, f"the first task of a moved partition ran {started - assigned_at:.1f}s late"


def test_a_record_kafka_refuses_holds_only_its_own_partition(kafka: Kafka) -> None:
    """The DLQ was made compacted by hand, so Kafka refuses a dead letter without a key (and its
    dead letter by reference). Before, every partition's commits failed with it and the worker
    stopped after three; now that partition alone is held, its records kept, and the other commits."""
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource

    from kqueue.core import names

    app = kqueue.App("refused", kafka.bootstrap, partitions=2)
    queue = unique("refused")
    ran: list[int] = []

    @app.task(queue=queue, max_attempts=1)
    def work(payload: dict[str, Any]) -> None:
        if payload.get("reject"):
            raise kqueue.Reject("rejected on purpose")
        ran.append(payload["n"])

    app.ensure_queue(queue)
    admin = kafka.admin()
    resource = ConfigResource(ConfigResource.Type.TOPIC, names.dlq_topic(queue), incremental_configs=[
        ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.SET)])
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(timeout=30)
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": kafka.bootstrap})
    def task(n: int, partition: int, key: bytes | None, **extra: Any) -> None:
        producer.produce(queue, json.dumps({"n": n, **extra}).encode(), key, partition=partition, headers=[
            (names.H_TYPE, b"work"), (names.H_CONTENT_TYPE, b"json"), (names.H_ID, f"t{n}".encode())])

    task(-1, 0, None, reject=True)  # no key: its dead letter is refused by a compacted DLQ
    for n in range(10):
        task(n, 1, f"k{n}".encode())
    assert producer.flush(10) == 0
    with ThreadedWorker(app, group=unique("g"), concurrency=4, commit_interval=0.1) as worker:
        wait_for(lambda: hasattr(worker.worker, "_table"), timeout=30, what="the worker to start")
        owner = lambda p: worker.worker._table.get((queue, p))  # noqa: E731
        wait_for(lambda: (o := owner(1)) is not None and o.committed == 10, timeout=60, what="partition 1 to commit")
        wait_for(lambda: (o := owner(0)) is not None and PauseReason.REFUSED in o.pauses, timeout=60,
                 what="partition 0 to be held")
        assert owner(0).committed in (None, 0) and worker.error is None  # type: ignore[union-attr]  # never past it
        worker.stop()
