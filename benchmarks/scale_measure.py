"""The scale model's inputs: measured here against one broker, or read from earlier results.

`measure()` reuses the other benchmarks' code: throughput.py's enqueue and worker run for the no-op
rate of one process (with a middleware timing each transaction commit), and scaling.py's levels of
real `kqueue consume` processes for the I/O-bound rate of one process and of groups.
`load_inputs()` reads benchmarks/results/scale_model.json, else throughput.json and scaling.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

import kqueue
from benchmarks import scaling, throughput
from benchmarks.common import RESULTS, broker, console
from benchmarks.scale_model import Measured
from kqueue.sdk.middleware import CommitEvent, Middleware


class CommitTimes(Middleware):
    """Collects the seconds of every commit (one transaction each) the worker makes."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    def on_commit(self, event: CommitEvent) -> None:
        self.seconds.append(event.seconds)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _noop_runs(bootstrap: str, records: int, rounds: int) -> tuple[float, list[float]]:
    """Tasks/s of one no-op worker (median over rounds) and every commit's seconds."""
    commits = CommitTimes()
    app = kqueue.App("bench", bootstrap, partitions=6, middleware=[commits])
    queue = f"scale-{uuid.uuid4().hex[:6]}"
    task = app.task(queue=queue, name="noop", schema=throughput.SCHEMA.parsed)(lambda payload: None)
    throughput.sdk_enqueue(app, task, records)
    seconds = [throughput.worker_run(app, queue, records, concurrency=8) for _ in range(rounds)]
    return records / statistics.median(seconds), commits.seconds


def measure(records: int, rounds: int, tasks: int, io_ms: float, concurrency: int, partitions: int,
            workers: tuple[int, ...]) -> tuple[Measured, dict[int, float], dict[int, float]]:
    """(inputs, group rate by worker count, seconds to join by worker count), all in one run."""
    args = argparse.Namespace(tasks=tasks, sleep_ms=io_ms, concurrency=concurrency, partitions=partitions)
    levels = workers if 1 in workers else (1, *workers)
    with broker() as bootstrap:
        with console.status("no-op worker runs"):
            noop_rate, commit_seconds = _noop_runs(bootstrap, records, rounds)
        joins: dict[int, float] = {}
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=console,
                      transient=True) as progress:
            group = {n: tasks / scaling.run_level(bootstrap, n, args, progress, joins) for n in levels}
    measured = Measured(
        noop_rate=noop_rate, io_rate=group[1], io_ms=io_ms, io_concurrency=concurrency,
        commit_p50_ms=1000 * statistics.median(commit_seconds),
        commit_p99_ms=1000 * percentile(commit_seconds, 0.99),
        rebalance_s=joins.get(2, joins[1]), cores=os.cpu_count() or 1,
        source="measured by benchmarks/scale_model.py --measure")
    return measured, group, joins


def _rows(payload: dict[str, Any]) -> dict[str, float]:
    return {row["name"]: float(row["rate"]) for row in payload.get("rows", [])}


def load_inputs(results: Path = RESULTS) -> tuple[Measured, dict[int, float], dict[int, float]] | None:
    """Inputs from an earlier --measure run, else from throughput.json + scaling.json; None if absent."""
    own = results / "scale_model.json"
    if own.exists():
        data = json.loads(own.read_text())
        measured = Measured(**data["measured"])
        group = {int(k): float(v) for k, v in data.get("group_rates", {}).items()}
        joins = {int(k): float(v) for k, v in data.get("join_seconds", {}).items()}
        return measured, group, joins
    rates_file, scaling_file = results / "throughput.json", results / "scaling.json"
    if not (rates_file.exists() and scaling_file.exists()):
        return None
    rates, levels = json.loads(rates_file.read_text()), json.loads(scaling_file.read_text())
    noop = _rows(rates).get("K worker sync no-op")
    group = {int(name.split()[0]): rate for name, rate in _rows(levels).items()}
    if noop is None or 1 not in group:
        return None
    measured = Measured(noop_rate=noop, io_rate=group[1], io_ms=float(levels.get("sleep_ms", 10.0)),
                        io_concurrency=int(levels.get("concurrency", 8)), commit_p50_ms=0.0, commit_p99_ms=0.0,
                        rebalance_s=0.0, cores=int(rates["machine"]["cpus"]),
                        source="read from benchmarks/results/throughput.json and scaling.json "
                               "(no commit latency or rebalance time in them)")
    return measured, group, {}


def save(path: Path, measured: Measured, group: dict[int, float], joins: dict[int, float],
         extra: dict[str, Any]) -> None:
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps({"measured": asdict(measured), "group_rates": group, "join_seconds": joins,
                                **extra}, indent=2))
