"""How late scheduled tasks start (never early), for delays of 2 s, 40 s and 5 min:

    python benchmarks/schedule_accuracy.py [--per-delay 50] [--delays 2s,40s,5m]

Enqueues tasks with enqueue(delay=...) spread over a few seconds, runs one worker with the default
tiers (1s 5s 30s 2m 10m 1h 6h), and records when each task started against its kq-not-before.
Prints p50/p99/max lateness per delay, and fails if any task started early.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rich.live import Live
from rich.table import Table

import kqueue
from benchmarks.common import RESULTS, broker, console
from kqueue.core.durations import parse_duration
from kqueue.worker.loop import Worker, WorkerOptions


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-delay", type=int, default=50)
    parser.add_argument("--delays", default="2s,40s,5m")
    args = parser.parse_args()
    delays = [d.strip() for d in args.delays.split(",")]
    with broker() as bootstrap:
        app = kqueue.App("sched-bench", bootstrap, partitions=6)
        queue = f"sched-{uuid.uuid4().hex[:6]}"
        started: dict[str, float] = {}
        lock = threading.Lock()

        @app.task(queue=queue)
        def tick(payload: dict[str, Any], ctx: kqueue.TaskContext) -> None:
            with lock:
                started[ctx.task_id] = time.time() * 1000

        due: dict[str, tuple[str, float]] = {}
        app.ensure_queue(queue)
        for i in range(args.per_delay):
            for delay in delays:
                seconds = parse_duration(delay)
                task_id = tick.enqueue({"i": i}, key=f"k{i}", delay=seconds)
                due[task_id] = (delay, time.time() * 1000 + seconds * 1000)
            time.sleep(3.0 / args.per_delay)  # spread enqueue times over ~3 s
        app.flush()
        worker = Worker(app, WorkerOptions(group=f"sched-{uuid.uuid4().hex[:6]}"))
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        deadline = time.time() + max(parse_duration(d) for d in delays) + 120
        with Live(console=console, refresh_per_second=2) as live:
            while len(started) < len(due) and time.time() < deadline:
                live.update(f"started {len(started)}/{len(due)} scheduled tasks")
                time.sleep(0.5)
        worker.request_stop()
        thread.join(60)
    table = Table(title="scheduled task lateness (start - kq-not-before), ms")
    for column in ("delay", "tasks", "started", "early", "p50", "p99", "max"):
        table.add_column(column, justify="right")
    results = {}
    for delay in delays:
        late = [started[t] - at for t, (d, at) in due.items() if d == delay and t in started]
        early = sum(1 for x in late if x < -1)  # -1 ms: the clock's granularity, not a real early start
        row = {"tasks": sum(1 for d, _ in due.values() if d == delay), "started": len(late), "early": early,
               "p50": statistics.median(late), "p99": percentile(late, 0.99), "max": max(late)}
        results[delay] = row
        table.add_row(delay, str(row["tasks"]), str(row["started"]), str(early), f"{row['p50']:.0f}",
                      f"{row['p99']:.0f}", f"{row['max']:.0f}")
    console.print(table)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "schedule_accuracy.json").write_text(__import__("json").dumps(results, indent=2))
    if any(r["early"] or r["started"] < r["tasks"] for r in results.values()):
        raise SystemExit("some tasks started early or never")


if __name__ == "__main__":
    main()
