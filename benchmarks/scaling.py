"""Scaling out: one, two and three `kqueue consume` processes on one queue, I/O-bound tasks.

    python benchmarks/scaling.py [--tasks 6000] [--sleep-ms 10] [--concurrency 8] [--partitions 6]
                                 [--workers 1,2,3]

Each level starts N workers as real `kqueue consume` processes in one group, waits until every one
holds partitions (steady state, not the joining), then enqueues --tasks tasks (keys spread over
600) whose handler sleeps --sleep-ms (an I/O-bound task) and times first completion to last. Rate
ratios are against one worker (or the first level of --workers), in the same run.
Goal: three workers >= 2.5x one.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import kqueue  # noqa: E402
from benchmarks.common import Row, broker, console, report  # noqa: E402
from kqueue.transport.inspect import wait_for_split  # noqa: E402

QUEUE = os.environ.get("KQ_BENCH_QUEUE", "scaling")
LOG = os.environ.get("KQ_BENCH_LOG", "")
SLEEP = float(os.environ.get("KQ_BENCH_SLEEP", "0.01"))

app = kqueue.App("bench-scaling")


@app.task(queue=QUEUE, name="io")
def io_task(payload: dict[str, Any]) -> None:
    time.sleep(SLEEP)  # an HTTP call, a database write...
    with open(LOG, "a") as log:
        log.write(f"{time.time()}\n")


def run_level(bootstrap: str, members: int, args: argparse.Namespace, progress: Progress,
              joins: dict[int, float] | None = None, processes: int = 1) -> float:
    """Seconds from the first completion to the last of args.tasks tasks, over `members` `kqueue consume`
    commands of `processes` processes each (`--processes`), all in one group; `joins` gets the seconds
    from starting the processes to every one holding partitions (process start-up included)."""
    queue = f"scaling-{uuid.uuid4().hex[:6]}"
    producer = kqueue.App("bench-producer", bootstrap, partitions=args.partitions)
    task = producer.task(queue=queue, name="io")(lambda payload: None)
    producer.ensure_queue(queue)
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "done.log"
        env = {**os.environ, "KQUEUE_BOOTSTRAP_SERVERS": bootstrap, "KQ_BENCH_QUEUE": queue,
               "KQ_BENCH_LOG": str(log), "KQ_BENCH_SLEEP": str(args.sleep_ms / 1000)}
        group = f"bench-{uuid.uuid4().hex[:6]}"
        workers = [subprocess.Popen([sys.executable, "-m", "kqueue", "consume", "--app", "benchmarks.scaling:app",
                                     "--group", group, "--concurrency", str(args.concurrency),
                                     "--processes", str(processes), "--log-level", "WARNING"],
                                    env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
                   for _ in range(members)]
        bar = progress.add_task(f"{members} worker(s) x {processes} process(es)", total=args.tasks)
        started = time.monotonic()
        deadline = started + 600
        try:
            if not wait_for_split(bootstrap, group, members * processes):
                raise SystemExit(f"the group did not reach {members * processes} member(s) with partitions in time")
            if joins is not None:
                joins[members] = time.monotonic() - started
            for i in range(args.tasks):
                task.enqueue({"n": i}, key=f"key-{i % 600}")
            producer.flush(60)
            done: list[float] = []
            while len(done) < args.tasks and time.monotonic() < deadline:
                time.sleep(0.2)
                done = [float(line) for line in log.read_text().split()] if log.exists() else []
                progress.update(bar, completed=len(done))
        finally:
            for w in workers:
                w.send_signal(signal.SIGTERM)
            for w in workers:
                w.wait(timeout=120)
        if len(done) < args.tasks:
            raise SystemExit(f"{members} worker(s) completed {len(done)} of {args.tasks} tasks in time")
        return max(done) - min(done)


def worker_levels(text: str) -> tuple[int, ...]:
    """`--workers 1,2,3,12`: distinct positive group sizes, in the order given."""
    try:
        levels = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give group sizes like 1,2,3,12") from None
    if not levels or min(levels) < 1 or len(set(levels)) != len(levels):
        raise argparse.ArgumentTypeError(f"{text!r}: group sizes must be distinct and at least 1")
    return levels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=6000)
    parser.add_argument("--sleep-ms", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--workers", type=worker_levels, default=(1, 2, 3),
                        help="Group sizes to run, in order, comma-separated (default 1,2,3)")
    args = parser.parse_args()
    with broker() as bootstrap, Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                         console=console, transient=True) as progress:
        seconds = {n: run_level(bootstrap, n, args, progress) for n in args.workers}
    base = args.workers[0]
    one = seconds[base]
    label = "1 worker" if base == 1 else f"{base} workers"
    rows = [Row(f"{n} worker(s)", args.tasks, s, label if n != base else "", one / s if n != base else None)
            for n, s in seconds.items()]
    report(f"scaling out, {args.tasks:,} tasks of {args.sleep_ms:g} ms, concurrency {args.concurrency} each, "
           f"{args.partitions} partitions", rows, "scaling",
           {"goals": {"3 workers / 1": 2.5}, "sleep_ms": args.sleep_ms, "concurrency": args.concurrency,
            "partitions": args.partitions, "workers": list(args.workers)})


if __name__ == "__main__":
    main()
