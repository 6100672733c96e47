"""The failure path's cost, side by side in one run on one broker:

    python benchmarks/failures.py [--records 50000]

clean / txn        no task fails, transactional settlement (the default)
10% fail / txn     10 % of tasks fail once: a retry record per failure in the batch's transaction,
                   goal >= 0.7x clean
clean / no-txn     no task fails, at-least-once settlement (--no-transactions)
10% fail / no-txn  10 % fail once, at-least-once
The rate is first attempts settled per second (completed, or moved to a delay tier); the run then
waits for every retry to complete, so every task is counted.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import kqueue
from benchmarks.common import Row, Stopwatch, broker, console, report
from benchmarks.throughput import SCHEMA, payload
from kqueue.core.retry import RetryPolicy
from kqueue.worker.loop import Worker, WorkerOptions


def run(bootstrap: str, records: int, fail_every: int | None, transactions: bool) -> tuple[float, float]:
    """(seconds to settle every first attempt, seconds until every task completed)."""
    queue = f"bench-fail-{uuid.uuid4().hex[:6]}"
    app = kqueue.App("bench", bootstrap, partitions=6, delay_tiers=("1s", "5s"),
                     retry_policy=RetryPolicy(base=1.0, cap=1.0, jitter=0.0))
    @app.task(queue=queue, name="maybe_fail", schema=SCHEMA.parsed)
    def maybe_fail(body: dict[str, Any], ctx: kqueue.TaskContext) -> None:
        if ctx.attempt == 1 and body["priority"] == 0:  # priority 0 marks the tasks that fail once
            raise ConnectionError("first attempt fails")

    app.ensure_queue(queue)
    for i in range(records):
        body = payload(i)
        body["priority"] = 0 if fail_every and i % fail_every == 0 else 1
        maybe_fail.enqueue(body, key=f"user-{i % 1000}")
    app.flush(60)
    expected_failures = (records + fail_every - 1) // fail_every if fail_every else 0

    marks: dict[str, Stopwatch | float] = {}

    def done(w: Worker) -> bool:
        counts = w.counts
        if "start" not in marks and w.stats.polled:
            marks["start"] = Stopwatch()
        if "first" not in marks and counts.completed + counts.retried >= records:
            start = marks["start"]
            assert isinstance(start, Stopwatch)
            marks["first"] = start.elapsed()
        return counts.completed >= records

    worker = Worker(app, WorkerOptions(group=f"bench-f-{uuid.uuid4().hex[:6]}", concurrency=8, batch_size=1000,
                                       commit_interval=1.0, transactions=transactions))
    stats = worker.run(until=done)
    if stats.completed != records or stats.retried != expected_failures or stats.dead_lettered:
        raise SystemExit(f"counts off: {stats}")
    start = marks["start"]
    assert isinstance(start, Stopwatch)
    first = marks["first"]
    assert isinstance(first, float)
    return first, start.elapsed()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=50_000)
    args = parser.parse_args()
    n = args.records
    rows: list[Row] = []
    totals: dict[str, float] = {}
    with broker() as bootstrap, console.status("running") as status:
        for name, fail_every, txn in (("clean / txn", None, True), ("10% fail / txn", 10, True),
                                      ("clean / no-txn", None, False), ("10% fail / no-txn", 10, False)):
            status.update(name)
            first, total = run(bootstrap, n, fail_every, txn)
            totals[name] = total
            rows.append(Row(name, n, first))
    base = {r.name: r for r in rows}
    base["10% fail / txn"].ratio = base["clean / txn"].seconds / base["10% fail / txn"].seconds
    base["10% fail / txn"].baseline = "clean / txn"
    base["clean / no-txn"].ratio = base["clean / txn"].seconds / base["clean / no-txn"].seconds
    base["clean / no-txn"].baseline = "clean / txn"
    base["10% fail / no-txn"].ratio = base["clean / no-txn"].seconds / base["10% fail / no-txn"].seconds
    base["10% fail / no-txn"].baseline = "clean / no-txn"
    report(f"failure path, {n:,} records (rate = first attempts settled/s)", rows, "failures",
           {"seconds_until_all_completed": totals, "goals": {"10% fail / clean": 0.7}})


if __name__ == "__main__":
    main()
