"""The scale model's arithmetic (benchmarks/scale_model.py), its inputs' files and scaling.py's --workers."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import pytest

from benchmarks import scale_measure
from benchmarks.scale_model import (
    CONSUMED_TOPICS_PER_QUEUE,
    TOPICS_PER_QUEUE,
    Deployment,
    KafkaLimits,
    Measured,
    Workload,
    ceilings,
    group_rate,
    in_flight,
    keda_lag_threshold,
    predicted_group_rates,
    process_rate,
    scale_step_delay,
    size,
    slot_overhead_s,
    targets,
)
from benchmarks.scaling import worker_levels

M = Measured(noop_rate=50_000, io_rate=320, io_ms=20, io_concurrency=8, commit_p50_ms=10, commit_p99_ms=40,
             rebalance_s=3, cores=2, source="test")


def test_a_queue_has_twelve_topics_and_its_workers_consume_ten() -> None:
    assert (TOPICS_PER_QUEUE, CONSUMED_TOPICS_PER_QUEUE) == (12, 10)


def test_slot_overhead_is_what_the_io_run_held_each_slot_beyond_its_sleep() -> None:
    # 8 slots turning over 320 times a second: 25 ms each, 20 of them the handler's sleep
    assert slot_overhead_s(M) == pytest.approx(0.005)


def test_a_process_carries_its_slots_turnover_and_never_more_than_its_noop_rate() -> None:
    assert process_rate(M, 0.0, 8) == 50_000
    assert process_rate(M, 5.0, 64) == pytest.approx(64 / 5.005)
    assert process_rate(M, 0.001, 100_000) == 50_000


def test_members_beyond_the_partitions_add_nothing() -> None:
    assert group_rate(100, 3, 12) == 300
    assert group_rate(100, 12, 12) == group_rate(100, 13, 12) == 1_200
    assert predicted_group_rates(M, [1, 2, 12, 24], 12) == {1: 320, 2: 640, 12: 3_840, 24: 3_840}


def test_little_law_gives_the_tasks_in_flight() -> None:
    assert in_flight(10_000_000 / 86_400, 5.0) == pytest.approx(578.7, abs=0.1)


def test_sizing_a_million_noop_tasks_a_second() -> None:
    s = size(Workload("1M", 1_000_000, 0.0), M, Deployment(), KafkaLimits())
    # 1.25 x 1M / 50k = 25 processes, rounded up to whole pods of 4
    assert (s.processes, s.pods, s.partitions) == (28, 7, 28)
    assert s.partition_replicas == 12 * 28 * 3
    assert s.group_partitions == 10 * 28
    assert s.write_mb_s == pytest.approx(1_200)  # 1M x 400 bytes x RF 3
    assert (s.brokers, s.brokers_for_bytes, s.brokers_for_partitions) == (12, 12, 1)
    assert s.transactions_s == pytest.approx(280)  # 28 processes, a commit each every 0.1 s
    assert s.keda_max_replicas == 7
    assert s.live_producer_ids == 56


def test_the_commit_interval_is_a_parameter_of_the_transaction_load() -> None:
    w = Workload("io", 1_000_000, 0.020)
    slow = size(w, M, Deployment(commit_interval_s=0.5), KafkaLimits())
    fast = size(w, M, Deployment(commit_interval_s=0.1), KafkaLimits())
    assert fast.processes == slow.processes
    assert fast.transactions_s == pytest.approx(5 * slow.transactions_s)
    assert fast.transactions_per_state_partition_s == pytest.approx(fast.transactions_s / 50)


def test_partition_replicas_set_the_broker_count_when_they_bind() -> None:
    # 20 ms tasks at concurrency 8: 320/s a process, so 1M/s needs thousands of partitions
    s = size(Workload("io", 1_000_000, 0.020), M, Deployment(concurrency=8), KafkaLimits())
    assert s.process_rate == pytest.approx(320)
    assert s.partitions == 3_908  # ceil(1.25M / 320) = 3,907 processes -> 977 pods of 4
    assert s.brokers == s.brokers_for_partitions == -(-12 * 3_908 * 3 // 4_000)


def test_ceilings_come_lowest_first_and_name_the_group_size_only_when_limited() -> None:
    d = Deployment(concurrency=8)
    found = ceilings(M, d, KafkaLimits(), brokers=6, task_s=0.020)
    assert [c.max_rate for c in found] == sorted(c.max_rate for c in found)
    # 6 brokers x 4,000 replicas / (12 topics x RF 3) = 666 partitions of 320/s each
    partitions = next(c for c in found if c.limit.startswith("partition replicas"))
    assert partitions.max_rate == pytest.approx(666 * 320)
    # 5,000 transactions/s at a commit every 0.1 s: 500 members of 320/s bind before the partitions
    assert found[0].limit.startswith("group coordinator") and found[0].max_rate == pytest.approx(500 * 320)
    assert found[1] is partitions
    every_half_second = ceilings(M, replace(d, commit_interval_s=0.5), KafkaLimits(), brokers=6, task_s=0.020)
    assert every_half_second[0].limit.startswith("partition replicas")
    assert not any(c.limit == "consumer group size" for c in found)
    limited = ceilings(M, d, replace(KafkaLimits(), group_max_size=100), brokers=6, task_s=0.020)
    assert limited[0].limit == "consumer group size"
    assert limited[0].max_rate == pytest.approx(100 * 320)


def test_the_cluster_wide_partition_limit_caps_the_per_broker_sum() -> None:
    found = ceilings(M, Deployment(concurrency=8), KafkaLimits(), brokers=100, task_s=0.020)
    partitions = next(c for c in found if c.limit.startswith("partition replicas"))
    assert partitions.max_rate == pytest.approx(200_000 // 36 * 320)


def test_keda_lag_threshold_sits_above_a_pods_running_tasks_plus_ten_seconds_of_its_rate() -> None:
    assert keda_lag_threshold(1_280, 256) == 256 + 12_800
    assert keda_lag_threshold(0.01, 0) == 1


def test_a_one_pod_scale_step_holds_up_that_pods_share_for_one_rebalance() -> None:
    assert scale_step_delay(1_000, 10, 3.0) == pytest.approx(300)
    s = size(Workload("1M", 1_000_000, 0.0), M, Deployment(), KafkaLimits())
    assert s.delayed_per_scale_step == pytest.approx(1_000_000 / 7 * 3)


def test_the_day_target_is_ten_million_over_the_day_times_the_peak() -> None:
    day = targets(peak=3)[2]
    assert day.rate == pytest.approx(3 * 10_000_000 / 86_400)
    assert day.task_s == 5.0


def test_worker_levels_parse_distinct_positive_group_sizes() -> None:
    assert worker_levels("1,2,3,12") == (1, 2, 3, 12)
    for bad in ("0,1", "1,1", "a", ""):
        with pytest.raises(argparse.ArgumentTypeError):
            worker_levels(bad)


def test_inputs_are_read_back_from_the_last_measure_run(tmp_path: Path) -> None:
    scale_measure.save(tmp_path / "scale_model.json", M, {1: 320.0, 12: 2_000.0}, {1: 4.0}, {"command": "x"})
    assert scale_measure.load_inputs(tmp_path) == (M, {1: 320.0, 12: 2_000.0}, {1: 4.0})


def test_inputs_fall_back_to_the_throughput_and_scaling_results(tmp_path: Path) -> None:
    assert scale_measure.load_inputs(tmp_path) is None
    (tmp_path / "throughput.json").write_text(json.dumps({
        "machine": {"cpus": 2}, "rows": [{"name": "K worker sync no-op", "rate": 60_000.0}]}))
    (tmp_path / "scaling.json").write_text(json.dumps({
        "sleep_ms": 10.0, "concurrency": 8,
        "rows": [{"name": "1 worker(s)", "rate": 700.0}, {"name": "3 worker(s)", "rate": 2_000.0}]}))
    loaded = scale_measure.load_inputs(tmp_path)
    assert loaded is not None
    measured, group, joins = loaded
    assert (measured.noop_rate, measured.io_rate, measured.io_ms, measured.cores) == (60_000.0, 700.0, 10.0, 2)
    assert group == {1: 700.0, 3: 2_000.0}
    assert joins == {}
