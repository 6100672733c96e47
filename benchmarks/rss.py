"""Worker memory: the resident set of one `kqueue consume` process idle, then with N tasks in flight.

Used by benchmarks/run.py (rows "worker RSS"). The process runs this module's app: each task writes
a line when it starts and then awaits for KQ_BENCH_HOLD seconds, so every started task stays in
flight while the resident set (VmRSS from /proc) is read. Keys are unique, so key order holds none back.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import kqueue  # noqa: E402
from kqueue.transport.inspect import wait_for_split  # noqa: E402

QUEUE = os.environ.get("KQ_BENCH_QUEUE", "rss")
LOG = os.environ.get("KQ_BENCH_LOG", "")
HOLD = float(os.environ.get("KQ_BENCH_HOLD", "600"))
SETTLE = 3.0  # seconds to let an idle worker's first allocations (fetch buffers, threads) happen

app = kqueue.App("bench-rss")


@app.task(queue=QUEUE, name="hold")
async def hold(payload: dict[str, Any]) -> None:
    with open(LOG, "a") as log:
        log.write("s\n")
    await asyncio.sleep(HOLD)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def measure(bootstrap: str, concurrency: int, in_flight: int, partitions: int = 6, timeout: float = 300
            ) -> tuple[float, float]:
    """(MiB idle, MiB with `in_flight` tasks started and awaiting; 0: none started) of one worker process."""
    queue = f"rss-{uuid.uuid4().hex[:6]}"
    producer = kqueue.App("bench-producer", bootstrap, partitions=partitions)
    task = producer.task(queue=queue, name="hold")(lambda payload: None)
    producer.ensure_queue(queue)
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "started.log"
        env = {**os.environ, "KQUEUE_BOOTSTRAP_SERVERS": bootstrap, "KQ_BENCH_QUEUE": queue, "KQ_BENCH_LOG": str(log)}
        group = f"rss-{uuid.uuid4().hex[:6]}"
        worker = subprocess.Popen([sys.executable, "-m", "kqueue", "consume", "--app", "benchmarks.rss:app",
                                   "--group", group, "--concurrency", str(concurrency), "--grace", "0",
                                   "--log-level", "WARNING"], env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
        try:
            if not wait_for_split(bootstrap, group, 1):
                raise RuntimeError("the RSS worker did not join its group in time")
            time.sleep(SETTLE)
            idle = rss_mib(worker.pid)
            if not in_flight:
                return idle, idle
            for i in range(in_flight):
                task.enqueue({"n": i}, key=f"k{i}")
            producer.flush(60)
            deadline = time.monotonic() + timeout
            started = 0
            while started < in_flight and time.monotonic() < deadline and worker.poll() is None:
                time.sleep(0.25)
                started = log.read_text().count("\n") if log.exists() else 0
            if started < in_flight:
                raise RuntimeError(f"only {started} of {in_flight} tasks started")
            time.sleep(1.0)  # the last starts' allocations land
            return idle, rss_mib(worker.pid)
        finally:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=60)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
