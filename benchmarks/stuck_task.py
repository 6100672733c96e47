"""What a worker holds behind one stuck task: one task that never finishes, then --later others.

    python benchmarks/stuck_task.py [--later 50000]

One partition, one worker in this process (--concurrency 8). The stuck task holds the commit
position, so everything completed above it must be remembered. Once no more completes for 2 s (or
all --later are done), the table shows: completions while stuck, offsets the partition's watermark
tracks and has settled, the completed-above set, the commit metadata's length, the time one encode
of that set takes (it runs on the poll thread at every commit), and the process's RSS growth.
Then the stuck task is released and the run checks that every task completed exactly once.
Written: results/stuck_task.json.
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
from benchmarks.common import Row, broker, console, report
from kqueue.core.completed import encode as encode_completed
from kqueue.worker.loop import Worker, WorkerOptions


def rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096 / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--later", type=int, default=50_000)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    with broker() as bootstrap:
        app = kqueue.App("stuck", bootstrap, partitions=1)
        queue = f"bench-stuck-{uuid.uuid4().hex[:6]}"
        release = threading.Event()
        done: Counter[int] = Counter()
        lock = threading.Lock()

        @app.task(queue=queue)
        def work(payload: dict[str, Any]) -> None:
            if payload.get("stuck"):
                release.wait(600)
            with lock:
                done[payload["n"]] += 1

        with console.status(f"enqueueing 1 + {args.later:,} tasks"):
            work.enqueue({"n": 0, "stuck": True}, key="stuck")
            for n in range(1, args.later + 1):
                work.enqueue({"n": n}, key=f"k{n % 997}")
            app.flush()
        rss_before = rss_mib()
        worker = Worker(app, WorkerOptions(group=f"bench-stuck-{uuid.uuid4().hex[:6]}", queues=[queue],
                                           concurrency=args.concurrency))
        thread = threading.Thread(target=worker.run, kwargs={"until": lambda _w: len(done) > args.later},
                                  daemon=True)
        thread.start()
        with Progress(console=console, transient=True) as progress:
            bar = progress.add_task("running behind the stuck task", total=args.later)
            joined_by = time.monotonic() + 60  # the group forms first: quiet only counts after work began
            while not done and time.monotonic() < joined_by:
                time.sleep(0.1)
            last, since = -1, time.monotonic()
            while len(done) < args.later and time.monotonic() - since < 2.0:
                if len(done) != last:
                    last, since = len(done), time.monotonic()
                progress.update(bar, completed=len(done))
                time.sleep(0.1)
        state = worker._table.get((queue, 0))
        assert state is not None
        order, settled = len(state.watermark._order), len(state.watermark._settled)
        above = set(state.completed_above)
        position = state.watermark.position() or 0
        started = time.perf_counter()
        metadata = encode_completed(position, above)
        encode_ms = (time.perf_counter() - started) * 1000
        figures = {"completed_while_stuck": len(done), "watermark_tracked": order, "watermark_settled": settled,
                   "completed_above": len(above), "metadata_chars": len(metadata),
                   "encode_ms": round(encode_ms, 2), "rss_growth_mib": round(rss_mib() - rss_before, 1)}
        with console.status("releasing the stuck task and draining"):
            release.set()
            thread.join(300)
            worker.request_stop()
        figures["all_completed_once"] = len(done) == args.later + 1 and max(done.values()) == 1
    table = Table(title=f"behind one stuck task, {args.later:,} later tasks")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for name, value in figures.items():
        table.add_row(name, f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value))
    console.print(table)
    report("stuck task", [Row("completed while stuck", int(figures["completed_while_stuck"]), 1.0)], "stuck_task",
           {"args": vars(args), "figures": figures})


if __name__ == "__main__":
    main()
