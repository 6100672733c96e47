"""A scale model: from measured per-process rates to partitions, pods, brokers and Kafka's limits.

    python benchmarks/scale_model.py [--measure] [--commit-interval 0.1] [--concurrency 64]
                                     [--processes-per-pod 4] [--brokers 6] [--peak 3]

--measure   measure the inputs first (one local broker, or $KQUEUE_BOOTSTRAP_SERVERS): a no-op worker
            (benchmarks/throughput.py's run, timing each transaction commit) and 1, 2, 3, 12
            `kqueue consume` processes on a 12-partition queue of 20 ms tasks (benchmarks/scaling.py)
without it   the inputs of the last --measure run (benchmarks/results/scale_model.json), else
            throughput.json + scaling.json, else an error saying to measure.
Prints the sizing of two targets (1,000,000 tasks/s; 10,000,000 tasks/day of 5 s tasks), each
Kafka limit's ceiling on one queue, and the predicted vs measured group rates; writes
benchmarks/results/scale_model.json. The model and its guesses: docs/scale.md.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rich.table import Table

from kqueue.core.names import DEFAULT_DELAY_TIERS, PRIORITIES
from kqueue.worker.checkpoint import COMMIT_INTERVAL

# Topics of a queue (core/topology.py): three lanes, the tiers, the DLQ and the dedup claims; every
# one has the queue's partition count. A worker consumes the lanes and the tiers (the router).
TOPICS_PER_QUEUE = len(PRIORITIES) + len(DEFAULT_DELAY_TIERS) + 2
CONSUMED_TOPICS_PER_QUEUE = len(PRIORITIES) + len(DEFAULT_DELAY_TIERS)
# Producers a worker process holds: its transactional settler and the status reporter's.
PRODUCERS_PER_PROCESS = 2


@dataclass(frozen=True)
class Measured:
    noop_rate: float  # tasks/s of one process with a no-op handler (CPU-bound: one core)
    io_rate: float  # tasks/s of one process with io_ms tasks at io_concurrency
    io_ms: float
    io_concurrency: int
    commit_p50_ms: float  # one transaction (records + offsets), begin to commit
    commit_p99_ms: float
    rebalance_s: float  # starting a process to every member holding partitions (an upper bound)
    cores: int
    source: str


@dataclass(frozen=True)
class KafkaLimits:
    """Figures from Kafka's docs and KIPs (sources in docs/scale.md); the last two are guesses."""
    replicas_per_broker: int = 4_000  # the long-standing guidance (KIP-578's motivation)
    partitions_per_cluster: int = 200_000  # the ZooKeeper-era guidance; KRaft aims far higher
    group_max_size: int | None = None  # group.max.size / group.consumer.max.size: unlimited by default
    transaction_state_partitions: int = 50  # transaction.state.log.num.partitions
    broker_write_mb_s: float = 100.0  # GUESS: replicated writes one broker sustains comfortably
    coordinator_txn_s: float = 5_000.0  # GUESS: transactions/s one group coordinator broker carries


@dataclass(frozen=True)
class Deployment:
    concurrency: int = 64  # --concurrency of each process
    processes_per_pod: int = 4  # --processes
    commit_interval_s: float = COMMIT_INTERVAL  # the worker's default: one transaction per process per interval
    replication: int = 3
    headroom: float = 1.25  # capacity over the target rate
    record_bytes: int = 400  # a task's record on the wire: payload, key, kq-* headers, batch overhead
    min_brokers: int = 3


@dataclass(frozen=True)
class Workload:
    name: str
    rate: float  # tasks/s to carry
    task_s: float  # handler time of one task (0: a no-op)


@dataclass(frozen=True)
class Sizing:
    workload: Workload
    process_rate: float
    processes: int
    pods: int
    partitions: int
    cores_per_pod: float
    partition_replicas: int
    group_partitions: int
    brokers: int
    brokers_for_partitions: int
    brokers_for_bytes: int
    write_mb_s: float
    transactions_s: float
    transactions_per_state_partition_s: float
    live_producer_ids: int
    keda_max_replicas: int
    keda_lag_threshold: int
    delayed_per_scale_step: float  # tasks that wait out one rebalance when KEDA adds or removes a pod


def slot_overhead_s(m: Measured) -> float:
    """Seconds a concurrency slot stays taken beyond the handler itself (dispatch, thread hop, the
    loop's turn), from the I/O run: a process of c slots turning over at io_rate holds each for c/rate."""
    return max(0.0, m.io_concurrency / m.io_rate - m.io_ms / 1000)


def process_rate(m: Measured, task_s: float, concurrency: int) -> float:
    """Tasks/s one worker process carries: its slots' turnover, never above its no-op (CPU) rate."""
    if task_s <= 0:
        return m.noop_rate
    return min(m.noop_rate, concurrency / (task_s + slot_overhead_s(m)))


def in_flight(rate: float, task_s: float) -> float:
    """Tasks running at once at `rate` (Little's law)."""
    return rate * task_s


def group_rate(per_process: float, members: int, partitions: int) -> float:
    """A group's rate: members beyond the partition count own nothing and add nothing."""
    return per_process * min(members, partitions)


def cpu_per_process(m: Measured, rate: float) -> float:
    """Cores one process uses at `rate`: a no-op process saturates one core (one GIL)."""
    return min(1.0, rate / m.noop_rate)


def size(w: Workload, m: Measured, d: Deployment, limits: KafkaLimits) -> Sizing:
    """Partitions, pods and brokers for one queue carrying `w`."""
    per_process = process_rate(m, w.task_s, d.concurrency)
    processes = math.ceil(w.rate * d.headroom / per_process)
    pods = math.ceil(processes / d.processes_per_pod)
    processes = pods * d.processes_per_pod
    partitions = processes  # every member owns one partition of each topic at full scale-out
    replicas = TOPICS_PER_QUEUE * partitions * d.replication
    write_mb_s = w.rate * d.record_bytes * d.replication / 1e6
    by_partitions = math.ceil(replicas / limits.replicas_per_broker)
    by_bytes = math.ceil(write_mb_s / limits.broker_write_mb_s)
    brokers = max(d.min_brokers, d.replication, by_partitions, by_bytes)
    transactions = processes / d.commit_interval_s
    return Sizing(
        workload=w, process_rate=per_process, processes=processes, pods=pods, partitions=partitions,
        cores_per_pod=d.processes_per_pod * cpu_per_process(m, w.rate * d.headroom / processes),
        partition_replicas=replicas, group_partitions=CONSUMED_TOPICS_PER_QUEUE * partitions, brokers=brokers,
        brokers_for_partitions=by_partitions, brokers_for_bytes=by_bytes, write_mb_s=write_mb_s,
        transactions_s=transactions,
        transactions_per_state_partition_s=transactions / limits.transaction_state_partitions,
        live_producer_ids=processes * PRODUCERS_PER_PROCESS,
        keda_max_replicas=partitions // d.processes_per_pod,
        keda_lag_threshold=keda_lag_threshold(per_process * d.processes_per_pod, d.concurrency * d.processes_per_pod),
        delayed_per_scale_step=scale_step_delay(w.rate, pods, m.rebalance_s),
    )


def keda_lag_threshold(pod_rate: float, pod_slots: int, drain_s: float = 10.0) -> int:
    """Lag per replica worth a replica. A busy pod's own lag includes the tasks running in its slots
    (uncommitted until settled), so the threshold must sit above them or KEDA scales on work in
    progress; above that, what one pod clears in `drain_s`. KEDA asks for ceil(lag / threshold)."""
    return max(1, round(pod_slots + pod_rate * drain_s))


def scale_step_delay(rate: float, pods: int, rebalance_s: float) -> float:
    """Tasks held up when one pod joins or leaves: its share of the partitions moves and waits about
    one rebalance (KIP-848 moves only those; the rest keep running)."""
    return rate / max(1, pods) * rebalance_s


@dataclass(frozen=True)
class Ceiling:
    limit: str
    max_rate: float  # tasks/s one queue reaches before this limit binds
    binds_at: str  # what runs out


def ceilings(m: Measured, d: Deployment, limits: KafkaLimits, brokers: int, task_s: float) -> list[Ceiling]:
    """For one queue on a cluster of `brokers`: the rate at which each limit binds, lowest first.
    The lowest is what breaks first when that queue grows."""
    per_process = process_rate(m, task_s, d.concurrency)
    max_partitions = min(brokers * limits.replicas_per_broker, limits.partitions_per_cluster) // (
        TOPICS_PER_QUEUE * d.replication)
    coordinator_members = limits.coordinator_txn_s * d.commit_interval_s
    found = [
        Ceiling("partition replicas per broker / cluster", max_partitions * per_process,
                f"{max_partitions:,} partitions per topic (x{TOPICS_PER_QUEUE} topics x RF {d.replication})"),
        Ceiling("broker write bandwidth", brokers * limits.broker_write_mb_s * 1e6 / (d.record_bytes * d.replication),
                f"{brokers} x {limits.broker_write_mb_s:g} MB/s of replicated writes"),
        Ceiling("group coordinator (one broker per group)", coordinator_members * per_process,
                f"{coordinator_members:,.0f} members committing every {d.commit_interval_s:g} s"),
    ]
    if limits.group_max_size is not None:
        found.append(Ceiling("consumer group size", limits.group_max_size * per_process,
                             f"{limits.group_max_size:,} members"))
    return sorted(found, key=lambda c: c.max_rate)


def predicted_group_rates(m: Measured, members: list[int], partitions: int) -> dict[int, float]:
    """The model's group rate for I/O tasks as measured: linear in members up to the partitions."""
    return {n: group_rate(m.io_rate, n, partitions) for n in members}


def targets(peak: float) -> list[Workload]:
    """The two targets: 1M tasks/s (no-op and 20 ms I/O tasks), 10M tasks/day of 5 s tasks at `peak`
    times the day's average."""
    day_rate = 10_000_000 / 86_400
    return [Workload("1M/s no-op", 1_000_000, 0.0), Workload("1M/s 20 ms I/O", 1_000_000, 0.020),
            Workload(f"10M/day 5 s tasks, peak {peak:g}x avg", day_rate * peak, 5.0)]


def _sizing_table(sizings: list[Sizing], d: Deployment) -> Table:
    table = Table(title=f"sizing one queue: concurrency {d.concurrency}, {d.processes_per_pod} processes/pod, "
                        f"commit every {d.commit_interval_s:g} s, RF {d.replication}, headroom {d.headroom:g}x")
    table.add_column("")
    for s in sizings:
        table.add_column(s.workload.name, justify="right")
    lines: list[tuple[str, str]] = [
        ("tasks/s to carry", "{s.workload.rate:,.0f}"), ("tasks in flight", "{inflight:,.0f}"),
        ("tasks/s per process", "{s.process_rate:,.0f}"), ("worker processes (group members)", "{s.processes:,}"),
        ("pods", "{s.pods:,}"), ("cores per pod (CPU request)", "{s.cores_per_pod:.2f}"),
        ("partitions per topic", "{s.partitions:,}"), ("partitions the group consumes", "{s.group_partitions:,}"),
        ("partition replicas (all topics)", "{s.partition_replicas:,}"),
        ("brokers (partitions / bytes / min)", "{s.brokers} ({s.brokers_for_partitions} / {s.brokers_for_bytes} / "
                                                f"{d.min_brokers})"),
        ("replicated writes MB/s", "{s.write_mb_s:,.0f}"), ("transactions/s (one per process per interval)",
                                                             "{s.transactions_s:,.0f}"),
        ("transactions/s per __transaction_state partition", "{s.transactions_per_state_partition_s:,.1f}"),
        ("live producer ids (2 per process)", "{s.live_producer_ids:,}"),
        ("KEDA maxReplicaCount", "{s.keda_max_replicas:,}"),
        ("KEDA lagThreshold (pod's slots + 10 s of its rate)", "{s.keda_lag_threshold:,}"),
        ("tasks delayed per one-pod scale step", "{s.delayed_per_scale_step:,.0f}"),
    ]
    for label, fmt in lines:
        table.add_row(label, *[fmt.format(s=s, inflight=in_flight(s.workload.rate, s.workload.task_s))
                               for s in sizings])
    return table


def _predicted_table(m: Measured, group: dict[int, float], joins: dict[int, float], partitions: int) -> Table:
    predicted = predicted_group_rates(m, sorted(group), partitions)
    table = Table(title=f"group rate, {m.io_ms:g} ms tasks, concurrency {m.io_concurrency}, {partitions} partitions, "
                        f"{m.cores}-core host")
    for column in ("workers", "predicted tasks/s", "measured tasks/s", "measured / predicted", "join s"):
        table.add_column(column, justify="right")
    for n in sorted(group):
        join = f"{joins[n]:.1f}" if n in joins else ""
        table.add_row(str(n), f"{predicted[n]:,.0f}", f"{group[n]:,.0f}", f"{group[n] / predicted[n]:.2f}", join)
    return table


def main() -> None:
    from benchmarks import scale_measure
    from benchmarks.common import RESULTS, console
    from benchmarks.scaling import worker_levels

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--measure", action="store_true", help="Measure the inputs first (loads the machine)")
    parser.add_argument("--records", type=int, default=60_000, help="--measure: no-op tasks per run")
    parser.add_argument("--rounds", type=int, default=2, help="--measure: no-op runs (median)")
    parser.add_argument("--tasks", type=int, default=12_000, help="--measure: I/O tasks per group level")
    parser.add_argument("--io-ms", type=float, default=20.0, help="--measure: handler sleep of an I/O task")
    parser.add_argument("--measure-concurrency", type=int, default=8, help="--measure: --concurrency per process")
    parser.add_argument("--partitions", type=int, default=12, help="--measure: partitions of the measured queue")
    parser.add_argument("--workers", type=worker_levels, default=(1, 2, 3, 12), help="--measure: group sizes")
    parser.add_argument("--commit-interval", type=float, default=COMMIT_INTERVAL,
                        help="Seconds between a process's commits [default: the worker's]")
    parser.add_argument("--concurrency", type=int, default=64, help="Sizing: --concurrency per process")
    parser.add_argument("--processes-per-pod", type=int, default=4, help="Sizing: --processes per pod")
    parser.add_argument("--brokers", type=int, default=6, help="Cluster size for the ceilings table")
    parser.add_argument("--peak", type=float, default=3.0, help="Peak over the day's average rate")
    parser.add_argument("--record-bytes", type=int, default=400, help="A task's record size on the wire")
    args = parser.parse_args()
    if min(args.commit_interval, args.peak) <= 0 or min(args.concurrency, args.processes_per_pod, args.brokers) < 1:
        parser.error("--commit-interval and --peak must be above 0; --concurrency, --processes-per-pod, "
                     "--brokers at least 1")
    if args.measure:
        measured, group, joins = scale_measure.measure(args.records, args.rounds, args.tasks, args.io_ms,
                                                       args.measure_concurrency, args.partitions, args.workers)
    else:
        loaded = scale_measure.load_inputs()
        if loaded is None:
            parser.error("no measured inputs in benchmarks/results/: run with --measure")
        measured, group, joins = loaded
    d = Deployment(concurrency=args.concurrency, processes_per_pod=args.processes_per_pod,
                   commit_interval_s=args.commit_interval, record_bytes=args.record_bytes)
    limits = KafkaLimits()
    sizings = [size(w, measured, d, limits) for w in targets(args.peak)]
    inputs = Table(title=f"inputs ({measured.source})")
    for column in ("no-op tasks/s/process", f"{measured.io_ms:g} ms tasks/s/process", "commit p50 / p99 ms",
                   "join s (2 members)", "slot overhead ms", "cores"):
        inputs.add_column(column, justify="right")
    inputs.add_row(f"{measured.noop_rate:,.0f}", f"{measured.io_rate:,.0f} (c={measured.io_concurrency})",
                   f"{measured.commit_p50_ms:.0f} / {measured.commit_p99_ms:.0f}", f"{measured.rebalance_s:.1f}",
                   f"{1000 * slot_overhead_s(measured):.1f}", str(measured.cores))
    console.print(inputs)
    console.print(_sizing_table(sizings, d))
    found = {w.name: ceilings(measured, d, limits, args.brokers, w.task_s) for w in targets(args.peak)[:2]}
    for name, rows in found.items():
        table = Table(title=f"{name}: where one queue stops growing on {args.brokers} brokers (lowest first)")
        for column in ("limit", "tasks/s at the limit", "what runs out"):
            table.add_column(column, justify="right" if column.startswith("tasks") else "left")
        for c in rows:
            table.add_row(c.limit, f"{c.max_rate:,.0f}", c.binds_at)
        console.print(table)
    partitions = args.partitions
    if group:
        console.print(_predicted_table(measured, group, joins, partitions))
    out = RESULTS / "scale_model.json"
    scale_measure.save(out, measured, group, joins, {
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "command": " ".join(sys.argv),
        "measured_partitions": partitions, "deployment": asdict(d), "limits": asdict(limits),
        "sizing": [asdict(s) for s in sizings],
        "ceilings": {name: [asdict(c) for c in rows] for name, rows in found.items()},
        "predicted_group_rates": predicted_group_rates(measured, sorted(group), partitions)})
    console.print(f"wrote {out}")


if __name__ == "__main__":
    main()
