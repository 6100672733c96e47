"""How fast ordered retries release a blocked key's parked tasks (README, "Ordered retries").

    python benchmarks/ordered_release.py [--keys 16] [--later 50] [--partitions 3]

Every key's first task fails once; with `ordered=True` its --later tasks park until the retry (1 s
later) succeeds, then run one by one, each copied back to its lane. The table shows, side by side
in one run: the release (first retry to last task) with ordered retries, and the same tasks
without (they run at once, the retries 1 s later). Per key, a step is one parked task: a copy
written with a commit and read back. Written: results/ordered_release.json.
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

import kqueue
from benchmarks.common import Row, broker, console, report
from kqueue.worker.loop import Worker, WorkerOptions


def run(bootstrap: str, ordered: bool, keys: int, later: int, partitions: int) -> tuple[float, list[float]]:
    """(seconds from the first retry to the last task, per-key seconds per released task)."""
    app = kqueue.App("ordered-bench", bootstrap, partitions=partitions)
    queue = f"bench-ordered-{uuid.uuid4().hex[:6]}"
    runs: dict[str, list[float]] = {}
    lock = threading.Lock()
    retried_at: list[float] = []

    @app.task(queue=queue, ordered=ordered, backoff=kqueue.RetryPolicy(base=1.0, jitter=0.0))
    def apply(payload: dict[str, Any], ctx: kqueue.TaskContext) -> None:
        if payload["seq"] == 0 and ctx.attempt == 1:
            raise RuntimeError("fails once")
        with lock:
            if payload["seq"] == 0:
                retried_at.append(time.monotonic())
            runs.setdefault(payload["key"], []).append(time.monotonic())

    for seq in range(later + 1):
        for k in range(keys):
            apply.enqueue({"key": f"k{k}", "seq": seq}, key=f"k{k}")
    app.flush()
    total = keys * (later + 1)
    worker = Worker(app, WorkerOptions(group=f"g-{uuid.uuid4().hex[:6]}", concurrency=8))
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 600
    with console.status(f"{'ordered' if ordered else 'unordered'}: {total:,} tasks"):
        while sum(map(len, runs.values())) < total and time.monotonic() < deadline:
            time.sleep(0.05)
    worker.request_stop()
    thread.join(60)
    end = max(t for times in runs.values() for t in times)
    first_retry = min(retried_at)
    steps = [(times[-1] - times[0]) / max(1, len(times) - 1) for times in runs.values()] if ordered else []
    return end - first_retry if ordered else end - min(t for times in runs.values() for t in times), steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keys", type=int, default=16)
    parser.add_argument("--later", type=int, default=50)
    parser.add_argument("--partitions", type=int, default=3)
    args = parser.parse_args()
    with broker() as bootstrap:
        plain_seconds, _ = run(bootstrap, False, args.keys, args.later, args.partitions)
        ordered_seconds, steps = run(bootstrap, True, args.keys, args.later, args.partitions)
    parked = args.keys * args.later
    rows = [Row("unordered: every task, from the first run", parked + args.keys, plain_seconds),
            Row("ordered: parked tasks, from the first retry", parked, ordered_seconds, "unordered",
                (parked / ordered_seconds) / ((parked + args.keys) / plain_seconds))]
    step_ms = sorted(s * 1000 for s in steps)
    extra = {"keys": args.keys, "later": args.later, "partitions": args.partitions,
             "per_key_step_ms": {"median": statistics.median(step_ms), "max": step_ms[-1]}}
    report("ordered retries: releasing parked tasks", rows, "ordered_release", extra)
    console.print(f"per key, one parked task released every {statistics.median(step_ms):.0f} ms (median over "
                  f"{args.keys} keys; slowest key {step_ms[-1]:.0f} ms)")


if __name__ == "__main__":
    main()
