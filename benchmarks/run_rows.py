"""The rows of benchmarks/run.py that measure kqueue (and the raw confluent-kafka loops it is held to),
built from the other benchmarks' measurement functions. Each function returns finished rows, each
with a ratio to its baseline measured in the same call."""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rich.progress import Progress

import kqueue
from benchmarks import failures, latency, scaling
from benchmarks.common import Stopwatch
from benchmarks.rss import measure as measure_rss
from benchmarks.throughput import (
    DEFAULTS,
    LEANEST,
    SCHEMA,
    defaults_apps,
    defaults_run,
    payload,
    raw_consume,
    raw_produce,
    sdk_enqueue,
    worker_run,
)

# `kqueue consume` with every optional output off and the cheapest settlement it offers.
LEANEST_FLAGS = "--log-level ERROR --summary-interval 0 --no-transactions --no-router --batch-size 1000"
LEANEST_OPTIONS: dict[str, Any] = {"batch_size": 1000, "transactions": False, "route_delays": False}
ENQUEUE_WINDOW = 1000  # async enqueues awaited together (FastStream's publish row does the same)
IO_SLEEP = 0.02


@dataclass
class Result:
    section: str
    name: str
    value: float | None  # None: not measured, `detail` says why
    unit: str
    baseline: str = ""
    ratio: float | None = None  # value / baseline's value
    detail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Sizes:
    records: int  # drain and enqueue rows
    rounds: int
    latency_seconds: float
    io_tasks: int  # at --concurrency 8; more for the wider rows (io_scale)
    group_tasks: int
    process_tasks: int
    failure_records: int
    in_flight: int

    def io_scale(self, concurrency: int) -> int:
        return self.io_tasks * max(1, min(concurrency, 256) // 8) // (2 if concurrency >= 64 else 1)


QUICK = Sizes(records=5_000, rounds=1, latency_seconds=3.0, io_tasks=300, group_tasks=1_200, process_tasks=3_000,
              failure_records=2_000, in_flight=1_000)
FULL = Sizes(records=100_000, rounds=3, latency_seconds=10.0, io_tasks=4_000, group_tasks=12_000,
             process_tasks=30_000, failure_records=50_000, in_flight=10_000)


def rate(records: int, seconds: float) -> float:
    return records / seconds if seconds > 0 else 0.0


def with_ratios(rows: list[Result], baseline: Result) -> list[Result]:
    for row in rows:
        if row is not baseline and row.value is not None and baseline.value:
            row.baseline, row.ratio = baseline.name, row.value / baseline.value
    return rows


def _medians(runs: dict[str, Callable[[], float]], rounds: int, step: Callable[[str], None]) -> dict[str, float]:
    """Each run `rounds` times, interleaved (this machine's speed drifts within a minute), median seconds."""
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for round_no in range(rounds):
        for name, run in runs.items():
            step(f"round {round_no + 1}/{rounds}: {name}")
            seconds[name].append(run())
    return {name: statistics.median(values) for name, values in seconds.items()}


async def _async_noop(body: dict[str, Any]) -> None:
    return None


def drain(bootstrap: str, sizes: Sizes, step: Callable[[str], None]) -> list[Result]:
    """One worker draining a pre-filled queue with a no-op handler; the raw consume loop as baseline."""
    n, queue = sizes.records, f"run-drain-{uuid.uuid4().hex[:6]}"
    filler = kqueue.App("bench", bootstrap)
    step("filling the drain queue")
    sdk_enqueue(filler, filler.task(queue=queue, name="noop", schema=SCHEMA.parsed)(lambda body: None), n)
    sync_apps = defaults_apps(bootstrap, queue, 6)
    async_apps = defaults_apps(bootstrap, queue, 6, handler=_async_noop)
    runs: dict[str, Callable[[], float]] = {
        "raw confluent-kafka consume + decode": lambda: raw_consume(bootstrap, queue, n),
        # Context, not a goal: a worker must read the headers to find each record's handler.
        "raw consume + headers + decode": lambda: raw_consume(bootstrap, queue, n, read_headers=True)}

    def kqueue_run(mode: str, app: kqueue.App) -> Callable[[], float]:
        return lambda: defaults_run(mode, app, queue, n, 8, {} if mode == DEFAULTS else LEANEST_OPTIONS)

    for kind, apps in (("sync", sync_apps), ("async", async_apps)):
        runs[f"kqueue {kind}, defaults"] = kqueue_run(DEFAULTS, apps[DEFAULTS])
        runs[f"kqueue {kind}, leanest"] = kqueue_run(LEANEST, apps[LEANEST])
    med = _medians(runs, sizes.rounds, step)
    rows = [Result("drain", name, rate(n, s), "tasks/s",
                   detail=f"{LEANEST_FLAGS}" if "leanest" in name else "") for name, s in med.items()]
    return with_ratios(rows, rows[0])


async def _sdk_enqueue_async(task: kqueue.TaskDef, n: int) -> float:
    watch = Stopwatch()
    for start in range(0, n, ENQUEUE_WINDOW):
        await asyncio.gather(*(task.enqueue_async(payload(i), key=f"user-{i % 1000}")
                               for i in range(start, min(n, start + ENQUEUE_WINDOW))))
    return watch.elapsed()


def enqueue(bootstrap: str, sizes: Sizes, step: Callable[[str], None]) -> list[Result]:
    n, base = sizes.records, f"run-enq-{uuid.uuid4().hex[:6]}"
    app = kqueue.App("bench", bootstrap)
    app.ensure_queue(f"{base}-raw")
    sdk = app.task(queue=f"{base}-sdk", name="noop", schema=SCHEMA.parsed)(lambda body: None)
    sdk_async = app.task(queue=f"{base}-async", name="noop", schema=SCHEMA.parsed)(lambda body: None)
    app.ensure_queue(sdk_async.queue)
    runs: dict[str, Callable[[], float]] = {
        "raw confluent-kafka produce": lambda: raw_produce(bootstrap, f"{base}-raw", n),
        "kqueue SDK enqueue": lambda: sdk_enqueue(app, sdk, n),
        "kqueue SDK enqueue_async": lambda: asyncio.run(_sdk_enqueue_async(sdk_async, n)),
    }
    med = _medians(runs, sizes.rounds, step)
    rows = [Result("enqueue", name, rate(n, s), "tasks/s",
                   detail=f"{ENQUEUE_WINDOW} awaited at a time" if "async" in name else "")
            for name, s in med.items()]
    return with_ratios(rows, rows[0])


def latencies(bootstrap: str, sizes: Sizes, top: float, progress: Progress, step: Callable[[str], None]
              ) -> list[Result]:
    """latency.py's open-loop levels at 25/50/75 % of `top` (kqueue's drain rate with defaults)."""
    ctx = mp.get_context("spawn")  # no fork of librdkafka threads
    jobs, out = ctx.Queue(), ctx.Queue()
    proc = ctx.Process(target=latency.producer_process, args=(jobs, out), daemon=True)
    proc.start()
    args = argparse.Namespace(seconds=sizes.latency_seconds, concurrency=8, partitions=6)
    app = kqueue.App("bench-latency", bootstrap, partitions=6)
    rows: list[Result] = []
    try:
        for load in (25, 50, 75):
            step(f"{load} % of {top:,.0f} tasks/s")
            level = latency.run_level(app, (proc, jobs, out), args, load, top * load / 100, progress)
            rows.append(Result("latency", f"enqueue -> start at {load} % load ({level['target_rate']:,.0f}/s)",
                               level["p99_ms"], "ms p99",
                               detail=f"p50 {level['p50_ms']:.1f} / p95 {level['p95_ms']:.1f} / "
                                      f"p99 {level['p99_ms']:.1f} ms", extra=level))
    finally:
        jobs.put(None)
        proc.join(30)
    return with_ratios(rows, rows[0])


def io_bound(bootstrap: str, sizes: Sizes, step: Callable[[str], None]) -> list[Result]:
    """Tasks that sleep 20 ms (an HTTP call), one worker with `kqueue consume`'s defaults."""
    queue = f"run-io-{uuid.uuid4().hex[:6]}"
    sync_app, async_app = kqueue.App("bench", bootstrap), kqueue.App("bench", bootstrap)

    def sleeper(body: dict[str, Any]) -> None:
        time.sleep(IO_SLEEP)

    async def async_sleeper(body: dict[str, Any]) -> None:
        await asyncio.sleep(IO_SLEEP)

    task = sync_app.task(queue=queue, name="noop", schema=SCHEMA.parsed)(sleeper)
    async_app.task(queue=queue, name="noop", schema=SCHEMA.parsed)(async_sleeper)
    step("filling the I/O queue")
    sdk_enqueue(sync_app, task, sizes.io_scale(256))
    rows = []
    for name, app, concurrency in (("sync, --concurrency 8", sync_app, 8), ("sync, --concurrency 64", sync_app, 64),
                                   ("sync, --concurrency 256", sync_app, 256),
                                   ("async, --concurrency 256", async_app, 256)):
        step(f"I/O-bound {name}")
        n = sizes.io_scale(concurrency)
        rows.append(Result("I/O-bound (20 ms sleep)", name, rate(n, worker_run(app, queue, n, concurrency, {})),
                           "tasks/s", detail=f"{n:,} tasks"))
    return with_ratios(rows, rows[0])


def _scaling_args(tasks: int, sleep_ms: float, partitions: int) -> argparse.Namespace:
    return argparse.Namespace(tasks=tasks, sleep_ms=sleep_ms, concurrency=8, partitions=partitions)


def processes(bootstrap: str, sizes: Sizes, progress: Progress, step: Callable[[str], None]) -> list[Result]:
    """One `kqueue consume` with --processes 1 and 2, no-op tasks (CPU-bound: where a second process helps)."""
    args = _scaling_args(sizes.process_tasks, 0.0, 6)
    rows = []
    for count in (1, 2):
        step(f"kqueue consume --processes {count}")
        seconds = scaling.run_level(bootstrap, 1, args, progress, processes=count)
        rows.append(Result("processes", f"--processes {count}, no-op", rate(args.tasks, seconds), "tasks/s",
                           detail=f"{args.tasks:,} tasks, each logs a line"))
    return with_ratios(rows, rows[0])


def group(bootstrap: str, sizes: Sizes, progress: Progress, step: Callable[[str], None], members: tuple[int, ...]
          ) -> list[Result]:
    """N `kqueue consume` processes in one group on a 12-partition queue, tasks sleeping 20 ms."""
    args = _scaling_args(sizes.group_tasks, IO_SLEEP * 1000, 12)
    rows = []
    for count in members:
        step(f"{count} worker(s) in a group")
        seconds = scaling.run_level(bootstrap, count, args, progress)
        rows.append(Result("group, 12 partitions, 20 ms tasks", f"{count} worker(s), --concurrency 8 each",
                           rate(args.tasks, seconds), "tasks/s", detail=f"{args.tasks:,} tasks"))
    return with_ratios(rows, rows[0])


def failure_path(bootstrap: str, sizes: Sizes, step: Callable[[str], None]) -> list[Result]:
    """failures.py's four runs: first attempts settled per second, 10 % failing once, txn on and off."""
    n = sizes.failure_records
    rows: dict[str, Result] = {}
    for name, fail_every, txn in (("clean, transactions", None, True), ("10 % fail once, transactions", 10, True),
                                  ("clean, --no-transactions", None, False),
                                  ("10 % fail once, --no-transactions", 10, False)):
        step(f"failures: {name}")
        first, total = failures.run(bootstrap, n, fail_every, txn)
        rows[name] = Result("failures", name, rate(n, first), "first attempts/s",
                            detail=f"all {n:,} completed after {total:.1f} s")
    listed = list(rows.values())
    with_ratios(listed[1:2], listed[0])
    with_ratios(listed[2:3], listed[0])
    with_ratios(listed[3:4], listed[2])
    return listed


def memory(bootstrap: str, sizes: Sizes, step: Callable[[str], None]) -> list[Result]:
    """One `kqueue consume` idle at the default --concurrency (baseline), then one at --concurrency N idle
    and with N async tasks in flight (the worker starts --concurrency handler threads up front)."""
    n = sizes.in_flight
    step("worker RSS idle, --concurrency 8")
    default_idle, _ = measure_rss(bootstrap, 8, 0)
    step(f"worker RSS idle, then {n:,} in flight")
    idle, busy = measure_rss(bootstrap, n, n)
    rows = [Result("worker RSS", "idle, --concurrency 8 (the default)", default_idle, "MiB"),
            Result("worker RSS", f"idle, --concurrency {n:,}", idle, "MiB"),
            Result("worker RSS", f"{n:,} async tasks in flight, --concurrency {n:,}", busy, "MiB")]
    return with_ratios(rows, rows[0])
