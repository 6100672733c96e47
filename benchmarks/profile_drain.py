"""Where a no-op drain spends its time: a flame graph (py-spy) or a cProfile table of the worker.

    python benchmarks/profile_drain.py [--records 300000] [--flame results/drain.svg] [--cprofile]

Fills a 6-partition queue with the throughput benchmark's payload (SDK enqueue), then drains it with
the worker as `kqueue consume` runs it with no flags. With --flame, py-spy samples this process (every
thread, idle ones left out) from the first poll to the last completion and writes an SVG; with
--cprofile, the poll thread's functions are listed by their own time. py-spy is not a kqueue
dependency: `pip install py-spy`.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import kqueue
from benchmarks.common import Stopwatch, broker, console
from benchmarks.throughput import SCHEMA, _consume_logging, sdk_enqueue
from kqueue.worker.heap import settle_worker_heap
from kqueue.worker.loop import Worker, WorkerOptions


def _py_spy(out: Path) -> subprocess.Popen[bytes]:
    exe = shutil.which("py-spy")
    if exe is None:
        raise SystemExit("py-spy is not installed: pip install py-spy")
    out.parent.mkdir(parents=True, exist_ok=True)
    kind = "flamegraph" if out.suffix == ".svg" else "raw"
    spy = subprocess.Popen([exe, "record", "--pid", str(os.getpid()), "--output", str(out), "--format", kind,
                            "--rate", "250", "--nonblocking"], stdout=subprocess.DEVNULL)
    time.sleep(1.0)  # py-spy attaches before the drain starts
    return spy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=300_000)
    parser.add_argument("--flame", type=Path,
                        help="write a py-spy flame graph of the drain here (.svg; other suffixes: collapsed stacks)")
    parser.add_argument("--cprofile", action="store_true", help="print the poll thread's top functions")
    parser.add_argument("--sort", default="tottime", help="cProfile's order (tottime, cumtime, ncalls)")
    parser.add_argument("--top", type=int, default=30, help="cProfile's functions listed")
    args = parser.parse_args()
    with broker() as bootstrap:
        app = kqueue.App("bench", bootstrap, partitions=6)
        queue = f"profile-{uuid.uuid4().hex[:6]}"
        task = app.task(queue=queue, name="noop", schema=SCHEMA.parsed)(lambda payload: None)
        with console.status(f"enqueueing {args.records:,} tasks"):
            sdk_enqueue(app, task, args.records)
        settle_worker_heap()
        worker = Worker(app, WorkerOptions(group=f"profile-{uuid.uuid4().hex[:6]}", queues=[queue]))
        marks: dict[str, Stopwatch] = {}

        def done(w: Worker) -> bool:
            if "first" not in marks and w.stats.polled:
                marks["first"] = Stopwatch()
            return w.counts.completed >= args.records

        spy = _py_spy(args.flame) if args.flame else None
        profile = cProfile.Profile() if args.cprofile else None
        with _consume_logging():
            if profile is not None:
                profile.enable()
            worker.run(until=done)
            if profile is not None:
                profile.disable()
        seconds = marks["first"].elapsed()
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(60)
            console.print(f"flame graph: {args.flame}")
        console.print(f"drained {args.records:,} in {seconds:.2f} s: {args.records / seconds:,.0f}/s"
                      f"{' (under a profiler)' if spy or profile else ''}")
        if profile is not None:
            pstats.Stats(profile).sort_stats(args.sort).print_stats(args.top)


if __name__ == "__main__":
    main()
