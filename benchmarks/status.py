"""The cost of status tracking, and GET latency of the status API with many tasks known; one run.

    python benchmarks/status.py [--records 100000] [--rounds 3] [--known 1000000] [--gets 3000]

Throughput (same pre-filled topic, fresh group per run, rounds alternate):
K-off   kqueue worker, no-op sync handler, no worker reports, no status view running
K-on    the same with worker reports on and the status view (`kqueue api`'s ingest process) reading
        every topic of the queue at the same time on the same machine (goal: >= 0.8x K-off)
GET latency: a status view holding --known tasks (rows written straight into its sqlite store),
served by the REST API (uvicorn, one process); --gets GETs of random known ids over one
keep-alive connection; p50/p99/max in ms (goal: p99 < 20 ms).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import kqueue
from benchmarks.common import Row, Stopwatch, broker, console, report
from benchmarks.throughput import SCHEMA, payload
from kqueue.api.listen import listen
from kqueue.view.process import IngestProcess
from kqueue.view.store import IngestBatch, Position, StatusStore
from kqueue.worker.loop import Worker, WorkerOptions


def worker_run(app: kqueue.App, queue: str, records: int, reports: bool) -> float:
    worker = Worker(app, WorkerOptions(group=f"bench-s-{uuid.uuid4().hex[:6]}", queues=[queue], concurrency=8,
                                       batch_size=1000, commit_interval=1.0, status_reports=reports))
    marks: dict[str, Stopwatch] = {}

    def done(w: Worker) -> bool:
        if "first" not in marks and w.stats.polled:
            marks["first"] = Stopwatch()
        return w.counts.completed >= records

    stats = worker.run(until=done)
    if stats.completed < records:
        raise SystemExit(f"worker settled only {stats.completed} tasks")
    return marks["first"].elapsed()


def throughput(bootstrap: str, records: int, rounds: int, partitions: int) -> tuple[list[Row], dict[str, Any]]:
    queue = f"bench-status-{uuid.uuid4().hex[:6]}"
    app = kqueue.App("bench", bootstrap, partitions=partitions)
    task = app.task(queue=queue, name="noop", schema=SCHEMA.parsed)(lambda p: None)
    with console.status(f"enqueueing {records:,} tasks"):
        for i in range(records):
            task.enqueue(payload(i), key=f"user-{i % 1000}")
        app.flush()
    seconds: dict[str, list[float]] = {"K-off": [], "K-on": []}
    with tempfile.TemporaryDirectory(prefix="kqueue-bench-view-") as tmp, Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=console) as bar:
        job = bar.add_task("status off/on rounds", total=rounds * 2)
        for r in range(rounds):
            for name in (("K-off", "K-on") if r % 2 == 0 else ("K-on", "K-off")):
                view = None
                if name == "K-on":  # a fresh view each round: it reads the whole queue while the worker runs
                    view = IngestProcess(bootstrap, Path(tmp) / f"view-{r}.db", [queue], app.tiers.names).start()
                try:
                    seconds[name].append(worker_run(app, queue, records, reports=name == "K-on"))
                finally:
                    if view is not None:
                        view.stop()
                bar.advance(job)
    off = statistics.median(seconds["K-off"])
    on = statistics.median(seconds["K-on"])
    rows = [Row("K-off", records, off), Row("K-on", records, on, "K-off", off / on)]
    return rows, {"rounds": {k: v for k, v in seconds.items()}}


def fill(store: StatusStore, known: int) -> list[str]:
    ids: list[str] = []
    now = int(time.time() * 1000)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=console) as bar:
        job = bar.add_task("filling the status view", total=known)
        for start in range(0, known, 50_000):
            batch = IngestBatch()
            for i in range(start, min(known, start + 50_000)):
                task_id = str(uuid.uuid4())
                ids.append(task_id)
                batch.positions.append(Position(task_id, "q", "noop", "q", i % 6, i // 6, -1, 1, None, now, None,
                                                now, 5, None))
            batch.read_positions[("q", 0)] = known
            store.write(batch, now)
            bar.advance(job, len(batch.positions))
    return ids


def get_latency(bootstrap: str, known: int, gets: int) -> dict[str, Any]:
    import uvicorn

    from kqueue.api.queues import QueueService
    from kqueue.api.server import create_api
    from kqueue.api.service import TaskService

    app = kqueue.App("bench", bootstrap)
    app.task(queue="q", name="noop")(lambda p: None)
    with tempfile.TemporaryDirectory(prefix="kqueue-bench-get-") as tmp:
        store = StatusStore(Path(tmp) / "view.db")
        ids = fill(store, known)
        listener = listen("127.0.0.1", 0)
        port = listener.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(create_api(TaskService(app, store), QueueService(app, store)),
                                               log_level="warning", access_log=False))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        latencies: list[float] = []
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            for task_id in random.sample(ids, min(200, len(ids))):  # warm up
                client.get(f"/api/v1/tasks/{task_id}")
            for task_id in random.choices(ids, k=gets):
                started = time.perf_counter()
                answer = client.get(f"/api/v1/tasks/{task_id}")
                latencies.append((time.perf_counter() - started) * 1000)
                if answer.status_code != 200:
                    raise SystemExit(f"GET answered {answer.status_code}: {answer.text}")
        server.should_exit = True
        thread.join(10)
    latencies.sort()
    return {"known": known, "gets": gets, "p50_ms": latencies[len(latencies) // 2],
            "p99_ms": latencies[int(len(latencies) * 0.99) - 1], "max_ms": latencies[-1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--known", type=int, default=1_000_000)
    parser.add_argument("--gets", type=int, default=3000)
    args = parser.parse_args()
    with broker() as bootstrap:
        rows, extra = throughput(bootstrap, args.records, args.rounds, args.partitions)
        latency = get_latency(bootstrap, args.known, args.gets)
    path = report("status tracking: throughput off/on", rows, "status", {**extra, "get_latency": latency})
    from rich.table import Table

    table = Table(title=f"GET /api/v1/tasks/{{id}} with {latency['known']:,} tasks known ({latency['gets']:,} GETs)")
    for column in ("p50 ms", "p99 ms", "max ms"):
        table.add_column(column, justify="right")
    table.add_row(f"{latency['p50_ms']:.2f}", f"{latency['p99_ms']:.2f}", f"{latency['max_ms']:.2f}")
    console.print(table)
    console.print(f"results in {path}")


if __name__ == "__main__":
    main()
