"""Completions per partition per second under a backlog: does a worker serve its partitions side by side?

    python benchmarks/partition_service.py [--tasks 6000] [--partitions 6] [--workers 2] [--sleep 0.02]

A queue with a backlog of I/O-bound tasks (each sleeps --sleep) over 200 keys; --workers workers of
one group in this process (threads, one consumer each, --concurrency 8). Every completion is noted
with its time, partition and worker. Printed: completions per partition in each window (--window s)
and, per window, the lowest partition's share of the average over the partitions that still had
work (1.0: perfectly even; 0: a partition starved). Written: results/partition_service.json and a
plot, results/partition_service.png (completions per partition over time).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from rich.progress import Progress
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import kqueue
from benchmarks.common import RESULTS, Row, broker, console, report
from kqueue.worker.loop import Worker, WorkerOptions


def _handler(index: int, sleep: float, done: list[tuple[float, int, int]], lock: threading.Lock,
             started: list[float]) -> Any:
    def work(payload: dict[str, Any], ctx: kqueue.TaskContext) -> None:
        time.sleep(sleep)
        with lock:
            done.append((time.monotonic() - started[0], ctx.partition, index))

    return work


def run(bootstrap: str, tasks: int, partitions: int, workers: int, sleep: float,
        concurrency: int) -> list[tuple[float, int, int]]:
    queue = f"bench-fair-{uuid.uuid4().hex[:6]}"
    done: list[tuple[float, int, int]] = []  # (seconds since start, partition, worker)
    lock = threading.Lock()
    started = [0.0]
    apps = []
    for index in range(workers):
        app = kqueue.App(f"fair-{index}", bootstrap, partitions=partitions)

        app.task(queue=queue, name="work")(_handler(index, sleep, done, lock, started))
        apps.append(app)
    sender = apps[0].tasks[(queue, "work")]
    with console.status(f"enqueueing {tasks:,} tasks"):
        for n in range(tasks):
            sender.enqueue({"n": n}, key=f"key-{n % 200}")
        apps[0].flush()
    group = f"bench-fair-{uuid.uuid4().hex[:6]}"
    running = [Worker(app, WorkerOptions(group=group, queues=[queue], concurrency=concurrency)) for app in apps]
    threads = [threading.Thread(target=w.run, kwargs={"until": lambda _w: len(done) >= tasks}, daemon=True)
               for w in running]
    started[0] = time.monotonic()
    for thread in threads:
        thread.start()
    with Progress(console=console, transient=True) as progress:
        bar = progress.add_task("draining the backlog", total=tasks)
        while any(t.is_alive() for t in threads):
            progress.update(bar, completed=len(done))
            time.sleep(0.2)
    return sorted(done)


def windows(done: list[tuple[float, int, int]], partitions: int, width: float) -> list[dict[str, Any]]:
    """Completions per partition in each window, and the lowest share of the busy partitions' average."""
    start = min(t for t, _, _ in done)
    last_of = {p: max((t for t, q, _ in done if q == p), default=start) for p in range(partitions)}
    out = []
    count = int((done[-1][0] - start) / width)
    for w in range(count):
        lo, hi = start + w * width, start + (w + 1) * width
        counts = Counter(p for t, p, _ in done if lo <= t < hi)
        busy = [p for p in range(partitions) if last_of[p] >= hi]  # still had work after the window
        average = sum(counts.get(p, 0) for p in busy) / len(busy) if busy else 0.0
        lowest = min((counts.get(p, 0) for p in busy), default=0)
        out.append({"window": w, "per_partition": [counts.get(p, 0) for p in range(partitions)],
                    "busy": busy, "min_share": round(lowest / average, 3) if average else None})
    return out


def plot(rows: list[dict[str, Any]], partitions: int, width: float, title: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(9, 4.5))
    xs = [r["window"] * width for r in rows]
    for p in range(partitions):
        axes.plot(xs, [r["per_partition"][p] / width for r in rows], label=f"partition {p}")
    axes.set_xlabel("seconds into the drain")
    axes.set_ylabel("completions per second")
    axes.set_title(title)
    axes.legend(loc="upper right", fontsize="small")
    figure.tight_layout()
    out = RESULTS / "partition_service.png"
    RESULTS.mkdir(exist_ok=True)
    figure.savefig(out, dpi=100)
    return str(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=6000)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sleep", type=float, default=0.02)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--window", type=float, default=1.0)
    args = parser.parse_args()
    with broker() as bootstrap:
        done = run(bootstrap, args.tasks, args.partitions, args.workers, args.sleep, args.concurrency)
    rows = windows(done, args.partitions, args.window)
    table = Table(title=f"completions per partition per {args.window:g} s window")
    table.add_column("s", justify="right")
    for p in range(args.partitions):
        table.add_column(f"p{p}", justify="right")
    table.add_column("lowest / average", justify="right")
    for r in rows:
        share = "" if r["min_share"] is None else f"{r['min_share']:.2f}"
        table.add_row(f"{r['window'] * args.window:g}", *[str(c) for c in r["per_partition"]], share)
    console.print(table)
    shares = [r["min_share"] for r in rows if r["min_share"] is not None]
    starved = sum(1 for s in shares if s == 0)
    summary = {"windows": len(rows), "windows_with_a_starved_partition": starved,
               "lowest_share": min(shares, default=None), "median_lowest_share": sorted(shares)[len(shares) // 2]
               if shares else None}
    console.print(summary)
    picture = plot(rows, args.partitions, args.window,
                   f"{args.tasks:,} tasks of {args.sleep * 1000:g} ms, {args.workers} worker(s), "
                   f"{args.partitions} partitions")
    seconds = done[-1][0] - done[0][0]
    report("partition service", [Row("backlog drained", len(done), seconds)], "partition_service",
           {"args": vars(args), "summary": summary, "windows": rows, "plot": picture})


if __name__ == "__main__":
    main()
