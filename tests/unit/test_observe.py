"""Operations decisions without a broker: health verdicts, lag grouping, stats rates, metric labels,
lifecycle log fields, and the supervisor's view of its children's beats."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

import kqueue
from kqueue.control.stats import summarize, with_rates
from kqueue.core.ids import derived_task_id
from kqueue.core.records import Settlement
from kqueue.observe.children import ChildrenHealth
from kqueue.observe.health import Beat, liveness, readiness, write_beat
from kqueue.observe.install import beat_path
from kqueue.observe.lag import lag_by_key, lag_key
from kqueue.observe.logs import LifecycleLog, formatter
from kqueue.observe.metrics import MetricsMiddleware
from kqueue.sdk.middleware import SettleEvent, TickEvent
from kqueue.transport.inspect import PartitionDepth

NOW = 1_000_000.0


def beat(**changes: object) -> Beat:
    fields: dict[str, object] = {"at": NOW - 1, "member_id": "m-1", "commits_failing_for": 0.0,
                                 "broker_answered_at": NOW - 2, "stopping": False}
    fields.update(changes)
    return Beat(**fields)  # type: ignore[arg-type]


def test_liveness_gives_a_starting_worker_the_bound_then_wants_recent_turns() -> None:
    assert liveness(None, started_at=NOW - 10, now=NOW, bound=60)[0]
    ok, reason = liveness(None, started_at=NOW - 61, now=NOW, bound=60)
    assert not ok and "no loop turn" in reason
    assert liveness(beat(at=NOW - 59), NOW - 500, NOW, bound=60)[0]
    ok, reason = liveness(beat(at=NOW - 61), NOW - 500, NOW, bound=60)
    assert not ok and "has not turned for 61s" in reason


@pytest.mark.parametrize(("changes", "why"), [
    ({"member_id": ""}, "not in the consumer group"),
    ({"commits_failing_for": 12.0}, "commits failing for 12s"),
    ({"broker_answered_at": None}, "Kafka has not answered"),
    ({"broker_answered_at": NOW - 16}, "Kafka has not answered"),
    ({"stopping": True}, "stopping"),
    ({"at": NOW - 200}, "stuck"),
])
def test_readiness_fails_for_each_reason(changes: dict[str, object], why: str) -> None:
    assert readiness(beat(), NOW)[0]
    ok, reason = readiness(beat(**changes), NOW)
    assert not ok and why in reason


def test_lag_keys_name_lanes_and_tiers() -> None:
    assert lag_key("email", "") == ("email", "normal", "")
    assert lag_key("email.high", "") == ("email", "high", "")
    assert lag_key("email.low", "") == ("email", "low", "")
    assert lag_key("p.email.delay.30s", "p.") == ("email", "", "30s")


def test_lag_sums_per_lane_and_counts_from_the_start_when_never_committed() -> None:
    ends = {("email", 0): 10, ("email", 1): 7, ("email.delay.5s", 0): 4, ("email.high", 0): 9}
    committed = {("email", 0): 8, ("email", 1): -1001, ("email.delay.5s", 0): 4}
    starts = {("email", 1): 2, ("email.high", 0): 3}
    assert lag_by_key(ends, committed, starts, "") == {
        ("email", "normal", ""): 2 + 5, ("email", "", "5s"): 0, ("email", "high", ""): 6}


def test_stats_group_lanes_in_order_and_rates_come_from_committed_progress() -> None:
    depths = [PartitionDepth("q.delay.30s", 0, 0, 5, 5), PartitionDepth("q", 0, 0, 100, 40),
              PartitionDepth("q", 1, 10, 50, None), PartitionDepth("q.delay.1s", 0, 0, 3, 1),
              PartitionDepth("q.dlq", 0, 0, 2, None), PartitionDepth("q.high", 0, 0, 0, None)]
    first = summarize("q", "g", depths, members=2, at=100.0)
    assert [(lane.lane, lane.tier) for lane in first.lanes] == [("high", ""), ("normal", ""), ("", "1s"), ("", "30s")]
    normal = first.lanes[1]
    assert normal.lag == 60 + 40 and normal.committed == 40 and normal.records == 140
    assert first.lag == 100 + 2 and first.dlq_records == 2 and first.members == 2
    later = summarize("q", "g", [PartitionDepth("q", 0, 0, 100, 90), PartitionDepth("q.dlq", 0, 0, 6, None)],
                      members=2, at=110.0)
    rates = with_rates(first, later).rates
    assert rates == {"settled_per_s": 5.0, "dead_letters_per_s": 0.4}


def _settle(outcome: Settlement, task_type: str | None = "send", **changes: object) -> SettleEvent:
    fields: dict[str, object] = dict(
        outcome=outcome, task_id="t-1", task_type=task_type, queue="email", topic="email", partition=0, offset=1,
        key=b"k", attempt=1, error_type=None, error_message=None, enqueued_at_ms=1_000, started_at=1.5,
        run_seconds=0.25, settled_at_ms=3_000, destination=None, tier=None)
    fields.update(changes)
    return SettleEvent(**fields)  # type: ignore[arg-type]


def test_metrics_count_outcomes_with_bounded_labels() -> None:
    app = kqueue.App("m", "localhost:1")

    @app.task(queue="email")
    def send(payload: object) -> None: ...

    metrics = MetricsMiddleware(app, CollectorRegistry())
    metrics.on_settle(_settle(Settlement.COMPLETED))
    metrics.on_settle(_settle(Settlement.RETRIED, destination="email.delay.5s", tier="5s", error_type="E"))
    metrics.on_settle(_settle(Settlement.DEAD_LETTERED, task_type="made-up-by-a-foreign-producer", run_seconds=None))
    metrics.on_settle(_settle(Settlement.DELIVERED, topic="email.delay.5s"))
    metrics.on_tick(TickEvent("w", "g", 4, 3, 10, (("email", 0), ("email.delay.5s", 0)), "m", 0.0, False))
    value = metrics.registry.get_sample_value
    assert value("kqueue_tasks_total", {"queue": "email", "task": "send", "outcome": "completed"}) == 1
    assert value("kqueue_tasks_total", {"queue": "email", "task": "send", "outcome": "retried"}) == 1
    assert value("kqueue_tasks_total", {"queue": "email", "task": "unknown", "outcome": "dead_lettered"}) == 1
    assert value("kqueue_retries_total", {"queue": "email", "task": "send", "tier": "5s"}) == 1
    assert value("kqueue_delay_moves_total", {"queue": "email", "tier": "5s", "outcome": "delivered"}) == 1
    assert value("kqueue_task_run_seconds_count", {"queue": "email", "task": "send"}) == 2
    # Latency counts final outcomes only: the completion and the dead letter, not the retry.
    assert value("kqueue_task_latency_seconds_sum", {"queue": "email", "task": "send", "outcome": "completed"}) == 2.0
    assert value("kqueue_task_latency_seconds_count", {"queue": "email", "task": "send", "outcome": "retried"}) is None
    assert value("kqueue_worker_utilization") == 0.75
    assert value("kqueue_partitions_owned", {"queue": "email"}) == 2
    assert value("kqueue_tasks_in_flight") == 10


def test_bulk_observations_expose_exactly_what_one_by_one_observations_do() -> None:
    from bisect import bisect_left

    from prometheus_client import Histogram, generate_latest

    from kqueue.observe.metrics import RUN_BUCKETS, add_observations

    values = [0.0, 0.001, 0.0015, 0.3, 2.5, 2.6, 400.0, 0.02]
    one, bulk = CollectorRegistry(), CollectorRegistry()
    single = Histogram("h_seconds", "h", ["q"], buckets=RUN_BUCKETS, registry=one).labels("a")
    for v in values:
        single.observe(v)
    buckets = [0] * (len(RUN_BUCKETS) + 1)
    for v in values:
        buckets[bisect_left(RUN_BUCKETS, v)] += 1
    add_observations(Histogram("h_seconds", "h", ["q"], buckets=RUN_BUCKETS, registry=bulk).labels("a"), buckets,
                     sum(values))
    strip = lambda text: [line for line in text.decode().splitlines() if "_created" not in line]  # noqa: E731
    assert strip(generate_latest(bulk)) == strip(generate_latest(one))


def test_lifecycle_lines_carry_the_task_fields_in_both_formats(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="kqueue.task")
    LifecycleLog().on_settle(_settle(Settlement.RETRIED, destination="email.delay.5s", tier="5s",
                                     error_type="ValueError", error_message="x" * 1000, key=b"user-7"))
    [record] = caplog.records
    as_json = json.loads(formatter("json").format(record))
    assert as_json["message"] == "task retried" and as_json["task_id"] == "t-1" and as_json["key"] == "user-7"
    assert as_json["attempt"] == 1 and as_json["duration_s"] == 0.25 and as_json["destination"] == "email.delay.5s"
    assert len(as_json["error"]) == 300 and as_json["level"] == "WARNING"  # a failed attempt: a line each
    text = formatter("text").format(record)
    assert "task retried" in text and "task_id=t-1" in text and "queue=email" in text and "attempt=1" in text


def test_children_health_reads_each_childs_beat(tmp_path: Path) -> None:
    health = ChildrenHealth(tmp_path, processes=2, liveness_timeout=5)
    health.started(0, 101)
    health.started(1, 102)
    assert health.live()[0]  # both starting, within the bound
    assert not health.ready()[0]
    now = time.time()
    write_beat(beat_path(tmp_path, 101), beat(at=now, broker_answered_at=now))
    write_beat(beat_path(tmp_path, 102), beat(at=now, broker_answered_at=now))
    assert health.ready()[0] and health.live()[0]
    write_beat(beat_path(tmp_path, 102), beat(at=now - 10, broker_answered_at=now))
    ok, reason = health.live()
    assert not ok and "pid 102" in reason
    health.ended(1, 102)
    assert not beat_path(tmp_path, 102).exists()
    ok, reason = health.ready()
    assert not ok and "1 of 2 worker processes are restarting" in reason


def test_a_dead_childs_live_gauges_leave_the_supervisors_scrape(tmp_path: Path) -> None:
    """Two child processes write multiprocess gauges and counters; once the supervisor is told one
    died, its live gauges stop counting and its counters stay (done work is still done)."""
    import os
    import subprocess
    import sys

    from prometheus_client import multiprocess

    child = (
        "from prometheus_client import CollectorRegistry, Counter, Gauge\n"
        "r = CollectorRegistry()\n"
        "Gauge('kqueue_worker_concurrency', 'c', registry=r, multiprocess_mode='livesum').set(8)\n"
        "Counter('kqueue_tasks', 't', registry=r).inc(5)\n"
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    pids = []
    for _ in range(2):
        proc = subprocess.run([sys.executable, "-c", child + "import os; print(os.getpid())"], env=env,
                              capture_output=True, text=True, check=True)
        pids.append(int(proc.stdout))
    health = ChildrenHealth(tmp_path, processes=2)

    def scrape() -> tuple[float | None, float | None]:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=str(tmp_path))  # type: ignore[no-untyped-call]
        return (registry.get_sample_value("kqueue_worker_concurrency"), registry.get_sample_value("kqueue_tasks_total"))

    assert scrape() == (16.0, 10.0)
    health.started(0, pids[0])
    health.ended(0, pids[0])
    assert scrape() == (8.0, 10.0)


@pytest.mark.parametrize("raw", [
    {"kq-id": b"t-3", "kq-attempt": b"2", "kq-enqueued-at": b"1700000000000"},  # the worker's own dict
    [("kq-id", b"t-3"), ("kq-attempt", b"2"), ("kq-enqueued-at", b"1700000000000")],  # as Kafka gives them
])
def test_settle_event_reads_header_fields_on_first_use(raw: object) -> None:
    from kqueue.sdk.middleware import UNREAD

    event = SettleEvent(Settlement.COMPLETED, UNREAD, "send", "email", "email", 2, 40, None, UNREAD, None, None,
                        UNREAD, None, 0.1, 1700000000500, raw_headers=raw)  # type: ignore[arg-type]
    assert event.enqueued_at_ms == 1700000000000 and event.task_id == "t-3" and event.attempt == 2
    bare = SettleEvent(Settlement.COMPLETED, UNREAD, "send", "email", "email", 2, 40, None, UNREAD, None, None,
                       UNREAD, None, 0.1, 1, raw_headers={"kq-enqueued-at": b"soon"})
    assert bare.enqueued_at_ms is None and bare.attempt == 1
    assert bare.task_id == derived_task_id("email", 2, 40)  # no kq-id: the same id the worker derives
