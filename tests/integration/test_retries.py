"""Failures move through the delay tiers and back; scheduled tasks never start early. Every task counted."""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import kqueue
from kqueue.core import names
from kqueue.core.headers import header_map
from kqueue.core.retry import RetryPolicy
from tests.support.kafka import Kafka, unique
from tests.support.worker import ThreadedWorker, wait_for

FAST_TIERS = ("1s", "2s", "5s")
FAST_BACKOFF = RetryPolicy(base=1.0, factor=2.0, cap=4.0, jitter=0.1)


def _tier_records(kafka: Kafka, queue: str) -> list[Any]:
    out = []
    for tier in FAST_TIERS:
        out += kafka.read_all(names.delay_topic(queue, tier), expected=None, timeout=5)
    return out


def test_flaky_task_retries_through_tiers_then_completes(kafka: Kafka) -> None:
    app = kqueue.App("retry", kafka.bootstrap, partitions=2, delay_tiers=FAST_TIERS, retry_policy=FAST_BACKOFF)
    queue = unique("retry")
    runs: dict[str, list[tuple[int, float]]] = defaultdict(list)
    lock = threading.Lock()

    @app.task(queue=queue, max_attempts=4)
    def flaky(payload: dict[str, Any], ctx: kqueue.TaskContext) -> None:
        with lock:
            runs[ctx.task_id].append((ctx.attempt, time.time()))
        if ctx.attempt <= payload["fail_times"]:
            raise ConnectionError(f"attempt {ctx.attempt} failed")

    plan = {flaky.enqueue({"fail_times": n % 3}, key=f"k{n}"): n % 3 for n in range(30)}  # 0, 1 or 2 failures
    app.flush()
    with ThreadedWorker(app, group=unique("g"), concurrency=4) as worker:
        wait_for(lambda: worker.worker.counts.completed == len(plan), timeout=90, what="all tasks completed")
        stats = worker.stop()
    assert stats.completed == len(plan) and stats.dead_lettered == 0
    assert stats.retried == sum(plan.values())
    for task_id, failures in plan.items():
        attempts = [a for a, _ in runs[task_id]]
        assert attempts == list(range(1, failures + 2))  # each attempt ran once, in order
        times = [t for _, t in runs[task_id]]
        for n, (before, after) in enumerate(itertools.pairwise(times), start=1):
            assert after - before >= FAST_BACKOFF.base * 2 ** (n - 1) - 0.05  # never earlier than the backoff
    tiered = _tier_records(kafka, queue)
    # One tier record per failed attempt, plus one per hop to a shorter tier when a record fell due
    # before its kq-not-before (jitter): none lost, none doubled.
    assert len(tiered) == stats.retried + stats.re_tiered
    attempts_tiered: dict[str, set[str]] = defaultdict(set)
    for m in tiered:
        headers = header_map(m.headers())
        attempts_tiered[headers[names.H_ID]].add(headers[names.H_ATTEMPT])
    assert {t: len(a) for t, a in attempts_tiered.items()} == {t: n for t, n in plan.items() if n}
    assert kafka.read_all(names.dlq_topic(queue), expected=None, timeout=3) == []


def test_exhausted_rejected_and_explicit_retry(kafka: Kafka) -> None:
    app = kqueue.App("retry", kafka.bootstrap, partitions=1, delay_tiers=FAST_TIERS, retry_policy=FAST_BACKOFF)
    queue = unique("exhaust")
    attempts: Counter[str] = Counter()
    explicit_times: list[float] = []

    @app.task(queue=queue, max_attempts=3)
    def doomed(payload: dict[str, Any], ctx: kqueue.TaskContext) -> None:
        attempts[payload["kind"]] += 1
        if payload["kind"] == "reject":
            raise kqueue.Reject("bad input, do not retry")
        if payload["kind"] == "explicit":
            explicit_times.append(time.time())
            if ctx.attempt == 1:
                raise kqueue.Retry(delay=timedelta(seconds=2))
            return
        raise ValueError("always fails")

    ids = {kind: doomed.enqueue({"kind": kind}) for kind in ("always", "reject", "explicit")}
    app.flush()
    with ThreadedWorker(app, group=unique("g")) as worker:
        wait_for(lambda: worker.worker.counts.dead_lettered == 2 and worker.worker.counts.completed == 1,
                 timeout=60, what="two dead letters and one completion")
        stats = worker.stop()
    assert attempts == Counter({"always": 3, "reject": 1, "explicit": 2})
    assert explicit_times[1] - explicit_times[0] >= 2.0
    assert stats.retried == 3  # "always" twice, "explicit" once
    letters = {header_map(m.headers())[names.H_ID]: header_map(m.headers())
               for m in kafka.read_all(names.dlq_topic(queue), expected=2)}
    assert set(letters) == {ids["always"], ids["reject"]}
    assert letters[ids["always"]][names.H_ATTEMPT] == "3"
    assert letters[ids["always"]][names.H_ERROR_TYPE] == "ValueError"
    assert letters[ids["always"]][names.H_ORIGIN].startswith(f"{queue}/0/")  # first delivery kept
    assert letters[ids["reject"]][names.H_ATTEMPT] == "1"
    assert letters[ids["reject"]][names.H_ERROR_TYPE] == "Reject"


def test_scheduled_tasks_never_start_early(kafka: Kafka) -> None:
    app = kqueue.App("sched", kafka.bootstrap, partitions=2)  # default tiers 1s 5s 30s ...
    queue = unique("sched")
    started: dict[str, float] = {}

    @app.task(queue=queue)
    def remind(payload: dict[str, Any], ctx: kqueue.TaskContext) -> None:
        started[ctx.task_id] = time.time()

    due: dict[str, float] = {}
    now = time.time()
    for i in range(10):
        due[remind.enqueue({"i": i}, delay=2.0 + i * 0.3)] = now + 2.0 + i * 0.3
    at = datetime.now(UTC) + timedelta(seconds=6)
    due[remind.enqueue({"i": "run_at"}, run_at=at)] = at.timestamp()
    due[remind.enqueue({"i": "now"})] = now
    app.flush()
    with ThreadedWorker(app, group=unique("g")) as worker:
        wait_for(lambda: len(started) == len(due), timeout=60, what="every scheduled task")
        stats = worker.stop()
    late = sorted(started[t] - due[t] for t in due)
    assert late[0] >= -0.01, f"a task started {-late[0]:.3f}s early"  # ms clock granularity only
    assert late[-1] < 5.0
    assert stats.completed == len(due) and stats.delivered == len(due) - 1


def test_waiting_tier_partitions_move_with_a_rebalance(kafka: Kafka) -> None:
    """Retries wait in a paused tier; a second worker joins and takes some of those partitions over."""
    tiers = ("1s", "5s")
    producer_app = kqueue.App("rebalance", kafka.bootstrap, partitions=4, delay_tiers=tiers)
    queue = unique("rebal")
    completions: Counter[str] = Counter()
    lock = threading.Lock()

    def make_app() -> kqueue.App:
        app = kqueue.App("rebalance", kafka.bootstrap, partitions=4, delay_tiers=tiers)

        @app.task(queue=queue, name="job")
        def job(payload: dict[str, Any], ctx: kqueue.TaskContext) -> None:
            if ctx.attempt == 1:
                raise kqueue.Retry(delay=5)  # every task waits in the 5s tier once
            with lock:
                completions[ctx.task_id] += 1

        return app

    @producer_app.task(queue=queue, name="job")
    def job(payload: dict[str, Any]) -> None: ...

    ids = [job.enqueue({"n": i}, key=f"key-{i}") for i in range(60)]
    producer_app.flush()
    group = unique("g")
    with ThreadedWorker(make_app(), group=group) as first:
        wait_for(lambda: first.worker.counts.retried == len(ids), what="all first attempts to fail")
        # The committed retries are fetched and the 5s tier partitions held, waiting for their heads.
        wait_for(lambda: len(first.worker.state()["router_holds"]) >= 2, what="tier partitions to be held")
        with ThreadedWorker(make_app(), group=group) as second:
            wait_for(lambda: sum(completions.values()) >= len(ids), timeout=60, what="all retries to complete")
            time.sleep(1)  # a duplicate would show up here
            second_stats = second.stop()
        first_stats = first.stop()
    assert completions == Counter({task_id: 1 for task_id in ids})  # none lost, none twice
    assert first_stats.revoked > 0  # the join really moved partitions away from the first worker
    assert second_stats.delivered > 0  # ...and the newcomer delivered due retries from tiers it took over
    assert first_stats.delivered + second_stats.delivered == len(ids)
