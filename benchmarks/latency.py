"""Enqueue -> handler-start latency of one kqueue worker under open-loop load.

    python benchmarks/latency.py [--seconds 10] [--loads 25,50,75] [--concurrency 8] [--partitions 6] [--max-rate N]

1. maximum   pre-fill a queue with --fill tasks and time one worker draining it (first poll to last
             completion, as `worker_run` in throughput.py). Skipped when --max-rate is given.
2. per load  a producer in a separate process (so it does not take the worker's GIL) enqueues at L % of
             that maximum for --seconds on a fixed schedule t0 + i/rate. It never waits for the worker and
             catches up without sleeping when late (open loop: a slow worker shows up as latency instead
             of slowing the producer down). Each payload carries time.time() taken right before enqueue();
             the handler records time.time() - sent when it starts. Fresh queue and group per level.
Payload: schemas/send_email.avsc plus a `sent` double, Avro, the same in both steps; keys over 1000 values.
Tasks sent in the first second (WARMUP) of each level are dropped: connections, first fetches.
Goals at 50 % load: p50 < 10 ms, p99 < 50 ms.
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing as mp
import os
import platform
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import kqueue
from benchmarks.common import RESULTS, broker, console
from kqueue.worker.loop import Worker, WorkerOptions

_BASE = json.loads((Path(kqueue.__file__).resolve().parents[1] / "schemas" / "send_email.avsc").read_text())
SCHEMA: dict[str, Any] = {**_BASE, "name": "TimedSendEmail",
                          "fields": [*_BASE["fields"], {"name": "sent", "type": "double", "default": 0.0}]}
WARMUP = 1.0
KEYS = 1000
ProducerHandle = tuple[Any, Any, Any]  # (process, job queue, result queue)
GOALS = {"load_percent": 50, "p50_ms": 10.0, "p99_ms": 50.0}


def payload(i: int, sent: float) -> dict[str, Any]:
    return {"to": f"user{i}@example.com", "subject": "hello", "body": "x" * 64, "priority": i % 5,
            "tags": ["bench"], "reply_to": None, "sent": sent}


def register(app: kqueue.App, queue: str, starts: list[tuple[float, float]]) -> kqueue.TaskDef:
    def handler(p: dict[str, Any]) -> None:
        now = time.time()  # first thing: this is the "handler start"
        starts.append((p["sent"], now - p["sent"]))

    return app.task(queue=queue, name="timed", schema=SCHEMA)(handler)


def produce(app: kqueue.App, queue: str, rate: float, count: int) -> dict[str, float]:
    """Enqueue `count` tasks at `rate`/s on a fixed schedule, then report what was sent."""
    task = register(app, queue, [])
    app.ensure_queue(queue)
    app.producer.poll(0)  # create the producer before the clock starts
    t0, wall0 = time.perf_counter(), time.time()
    behind = 0.0
    for i in range(count):
        ahead = t0 + i / rate - time.perf_counter()
        if ahead > 0:
            time.sleep(ahead)
        else:
            behind = max(behind, -ahead)  # late: send now, no sleep, the schedule stays fixed
        task.enqueue(payload(i, time.time()), key=f"user-{i % KEYS}")
    last = time.perf_counter() - t0
    app.flush(60)
    return {"sent": count, "wall0": wall0, "sent_rate": (count - 1) / last if last > 0 else 0.0,
            "max_behind_ms": behind * 1000}


def producer_process(jobs: Any, out: Any) -> None:
    """Child process, one for the whole run: runs each (bootstrap, partitions, queue, rate, count) job."""
    app: kqueue.App | None = None
    for bootstrap, partitions, queue, rate, count in iter(jobs.get, None):
        app = app or kqueue.App("bench-latency", bootstrap, partitions=partitions)
        out.put(produce(app, queue, rate, count))


def new_worker(app: kqueue.App, queue: str, concurrency: int) -> Worker:
    return Worker(app, WorkerOptions(group=f"lat-{uuid.uuid4().hex[:8]}", queues=[queue], concurrency=concurrency))


def max_rate(app: kqueue.App, args: argparse.Namespace, progress: Progress) -> float:
    queue, fill = f"lat-max-{uuid.uuid4().hex[:8]}", int(args.fill)
    task = register(app, queue, [])
    bar = progress.add_task("step 1: pre-filling", total=fill)
    for i in range(fill):
        task.enqueue(payload(i, time.time()), key=f"user-{i % KEYS}")
        if i % 1000 == 0:
            progress.update(bar, completed=i)
    app.flush(60)
    progress.update(bar, description="step 1: one worker draining", completed=0)
    first: list[float] = []

    def done(w: Worker) -> bool:
        if not first and w.stats.polled:
            first.append(time.perf_counter())
        progress.update(bar, completed=w.counts.completed)
        return w.counts.completed >= fill

    new_worker(app, queue, args.concurrency).run(until=done)
    return fill / (time.perf_counter() - first[0])


def run_level(app: kqueue.App, producer: ProducerHandle, args: argparse.Namespace, load: int, rate: float,
              progress: Progress) -> dict[str, Any]:
    queue = f"lat-{load}-{uuid.uuid4().hex[:8]}"
    starts: list[tuple[float, float]] = []
    task = register(app, queue, starts)
    count = max(2, round(rate * args.seconds))
    proc, jobs, out = producer
    started: list[bool] = []
    bar = progress.add_task(f"step 2: {load} % load, {rate:,.0f}/s", total=count)
    deadline = time.monotonic() + 3 * args.seconds + 60
    # The load starts once the worker has run a first task (a probe, sent before the clock starts and
    # left out), so start-up is not measured: joining the group, and reading the control topic (every
    # pending cancel and pause is known before a task starts), which took 1.4 s on a long-lived broker
    # here, after the partitions were assigned.
    task.enqueue(payload(0, time.time()), key="probe")
    app.flush(60)

    def done(w: Worker) -> bool:
        if not started and starts:
            jobs.put((app.bootstrap_servers, args.partitions, queue, rate, count))
            started.append(True)
        progress.update(bar, completed=len(starts))
        failed = proc.exitcode not in (None, 0) or time.monotonic() > deadline
        return failed or len(starts) >= count + 1

    new_worker(app, queue, args.concurrency).run(until=done)
    if proc.exitcode not in (None, 0) or len(starts) < count + 1:
        raise SystemExit(f"{load} %: producer exit {proc.exitcode}, {len(starts) - 1} of {count} tasks started")
    sent = out.get(timeout=60)
    kept = sorted(lat * 1000 for s, lat in starts if s >= sent["wall0"] + WARMUP)
    cuts = statistics.quantiles(kept, n=100, method="inclusive")
    return {"load_percent": load, "target_rate": rate, "sent_rate": sent["sent_rate"], "sent": sent["sent"],
            "measured": len(kept), "p50_ms": cuts[49], "p95_ms": cuts[94], "p99_ms": cuts[98], "max_ms": kept[-1],
            "producer_max_behind_ms": sent["max_behind_ms"]}


def write(rows: list[dict[str, Any]], top: float, args: argparse.Namespace) -> None:
    """A latency-shaped cousin of common.report: table to the console, JSON to --out."""
    source = "given" if args.max_rate else f"measured, {args.fill:,} tasks"
    table = Table(title=f"enqueue -> handler start, one worker, concurrency {args.concurrency}, "
                        f"{args.partitions} partitions, max {top:,.0f}/s ({source})",
                  caption=f"{args.seconds:g} s per level, first {WARMUP:g} s dropped as warm-up; "
                          f"goals at {GOALS['load_percent']} %: p50 < {GOALS['p50_ms']:g} ms, "
                          f"p99 < {GOALS['p99_ms']:g} ms")
    for column in ("load", "target/s", "sent/s", "tasks", "p50 ms", "p95 ms", "p99 ms", "max ms"):
        table.add_column(column, justify="right")
    for r in rows:
        table.add_row(f"{r['load_percent']} %", f"{r['target_rate']:,.0f}", f"{r['sent_rate']:,.0f}",
                      f"{r['measured']:,}", *(f"{r[k]:.1f}" for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms")))
    console.print(table)
    at_goal = [r for r in rows if r["load_percent"] == GOALS["load_percent"]]
    met = (at_goal[0]["p50_ms"] < GOALS["p50_ms"] and at_goal[0]["p99_ms"] < GOALS["p99_ms"]) if at_goal else None
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "benchmark": "latency",
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "loadavg_at_end": os.getloadavg()},  # other work on the box skews latency: check this
        "kqueue": str(Path(kqueue.__file__).resolve().parent),
        "max_rate": top, "max_rate_source": source, "seconds": args.seconds, "warmup_seconds": WARMUP,
        "concurrency": args.concurrency, "partitions": args.partitions,
        "goals": GOALS, "goals_met": met, "rows": rows,
    }, indent=2))
    console.print(f"wrote {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="Open-loop send time per load level")
    parser.add_argument("--loads", default="25,50,75", help="Percentages of the maximum rate")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--max-rate", type=float, default=None, help="Tasks/s to take as 100 %% (skips step 1)")
    parser.add_argument("--fill", type=int, default=30_000, help="Tasks pre-filled for step 1")
    parser.add_argument("--out", default=str(RESULTS / "latency.json"))
    args = parser.parse_args()
    loads = [int(x) for x in args.loads.split(",")]
    # Spawned (no fork of librdkafka threads) before anything else, and kept: it imports kqueue once.
    ctx = mp.get_context("spawn")
    jobs, out = ctx.Queue(), ctx.Queue()
    producer: ProducerHandle = (ctx.Process(target=producer_process, args=(jobs, out), daemon=True), jobs, out)
    producer[0].start()
    with broker() as bootstrap:
        app = kqueue.App("bench-latency", bootstrap, partitions=args.partitions)
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console, transient=True, refresh_per_second=4) as progress:
            top = args.max_rate or max_rate(app, args, progress)
            rows = [run_level(app, producer, args, load, top * load / 100, progress) for load in loads]
        jobs.put(None)
        del app
        gc.collect()  # free the librdkafka clients (workers hold cycles) before the broker stops, or they log
    write(rows, top, args)


if __name__ == "__main__":
    main()
