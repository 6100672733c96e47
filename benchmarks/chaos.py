"""Chaos: real `kqueue consume` processes and real brokers, faults injected, every task counted.

    python benchmarks/chaos.py [--scenario takeover|outage|broker-loss|all] [--tasks 30000]
                               [--keys 200] [--malformed 1000] [--sleep-ms 20] [--kill-every 10]

takeover     three workers (--concurrency 8, --instance-id each); a calm run, then one with a random
             worker SIGKILLed every --kill-every seconds and started again at once with its id.
outage       one worker, a one-node cluster whose broker is SIGKILLed for 20 s mid-run.
broker-loss  one worker, a three-node cluster (RF 3, min ISR 2) that loses one broker for good.

Per run: wall time, tasks lost (enqueued, never completed), per-key order breaks (a key's first
completions out of enqueue order), duplicate runs, malformed records dead-lettered more than once,
worker processes that exited on their own, and the longest gap without a completion. Goals: nothing
lost, no order breaks, no malformed record dead-lettered twice, no worker exiting by itself.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import kqueue  # noqa: E402
from benchmarks.common import RESULTS, console  # noqa: E402
from kqueue.core import names  # noqa: E402
from kqueue.dev.cluster import DevCluster, port_open  # noqa: E402
from kqueue.transport.inspect import read_headers  # noqa: E402

QUEUE = os.environ.get("KQ_BENCH_QUEUE", "chaos")
LOG = os.environ.get("KQ_BENCH_LOG", "")
SLEEP = float(os.environ.get("KQ_BENCH_SLEEP", "0.02"))

app = kqueue.App("bench-chaos")


@app.task(queue=QUEUE, name="work")
def work(payload: dict[str, Any], ctx: kqueue.TaskContext) -> None:
    time.sleep(SLEEP)
    with open(LOG, "a") as log:  # one short append per completion: lines never interleave
        log.write(f"{payload['k']} {payload['n']} {time.time():.3f} {os.getpid()}\n")


@dataclass
class Kill:
    """One SIGKILL: what the killed worker had completed that ran again, against its pace just before."""

    at: float  # seconds into the run
    reruns: int  # tasks the killed worker completed before the kill that completed again after it
    per_second: float  # the killed worker's completions per second over the KILL_PACE seconds before
    running: float  # handlers busy at the kill: per_second x the handler's time (Little's law)

    @property
    def reruns_in_seconds(self) -> float:
        """The re-runs as seconds of the killed worker's completions."""
        return self.reruns / self.per_second if self.per_second else 0.0


KILL_PACE = 2.0  # seconds of a worker's completions before its kill that give its pace


@dataclass
class Outcome:
    scenario: str
    tasks: int
    seconds: float
    lost: int
    order_breaks: int
    duplicates: int
    malformed_dead_lettered: int
    malformed_twice: int
    worker_exits: int
    longest_gap: float
    kills: list[Kill]


class Workers:
    """`kqueue consume` processes, each with its own instance id, restartable one by one."""

    def __init__(self, bootstrap: str, queue: str, log: Path, count: int, concurrency: int, sleep: float,
                 logs: Path, commit_interval: float | None = None) -> None:
        self.logs = logs
        self.env = {**os.environ, "KQUEUE_BOOTSTRAP_SERVERS": bootstrap, "KQ_BENCH_QUEUE": queue,
                    "KQ_BENCH_LOG": str(log), "KQ_BENCH_SLEEP": str(sleep)}
        self.group = f"chaos-{uuid.uuid4().hex[:6]}"
        self.concurrency = concurrency
        self.commit_interval = commit_interval  # None: the worker's default
        self.procs = [self._start(i) for i in range(count)]
        self.exits = 0  # processes that ended without being killed
        self.kills: list[tuple[float, int]] = []  # (wall time, pid) of each SIGKILL

    def _start(self, slot: int) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "kqueue", "consume", "--app", "benchmarks.chaos:app",
                                 "--group", self.group, "--concurrency", str(self.concurrency),
                                 "--instance-id", f"{self.group}-{slot}", "--log-level", "WARNING",
                                 *([] if self.commit_interval is None
                                   else ["--commit-interval", str(self.commit_interval)])],
                                env=self.env, cwd=ROOT, stdout=subprocess.DEVNULL,
                                stderr=(self.logs / f"worker-{slot}.log").open("a"))

    def kill_and_restart(self, slot: int) -> None:
        self.kills.append((time.time(), self.procs[slot].pid))
        self.procs[slot].kill()
        self.procs[slot].wait()
        self.procs[slot] = self._start(slot)

    def watch(self) -> None:
        for slot, proc in enumerate(self.procs):
            if proc.poll() is not None:
                self.exits += 1
                self.procs[slot] = self._start(slot)

    def stop(self) -> None:
        for proc in self.procs:
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()


def enqueue(bootstrap: str, queue: str, tasks: int, keys: int, malformed: int, partitions: int) -> None:
    producer = kqueue.App("bench-chaos-producer", bootstrap, partitions=partitions)
    task = producer.task(queue=queue, name="work")(lambda payload: None)
    for n in range(tasks):
        key = f"k{n % keys}"
        task.enqueue({"k": key, "n": n}, key=key)
        if malformed and n % max(1, tasks // malformed) == 0 and n // max(1, tasks // malformed) < malformed:
            # a record that can never run: the worker must dead-letter it once and go on
            producer.producer.produce(queue, b"{not json", key.encode(),
                                      [(names.H_TYPE, b"work"), (names.H_CONTENT_TYPE, b"json"),
                                       (names.H_ID, f"malformed-{n}".encode())])
    producer.flush(120)


def count(log: Path, tasks: int) -> tuple[int, int, int, float]:
    """(lost, order breaks, duplicates, longest gap between completions)."""
    lines = log.read_text().split("\n") if log.exists() else []
    firsts: dict[str, list[int]] = defaultdict(list)
    seen: Counter[int] = Counter()
    times: list[float] = []
    for line in lines:
        if not line:
            continue
        key, n_text, at, _pid = line.split()
        n = int(n_text)
        if seen[n] == 0:
            firsts[key].append(n)
        seen[n] += 1
        times.append(float(at))
    breaks = sum(1 for ns in firsts.values() for a, b in pairwise(ns) if b < a)
    times.sort()
    gap = max((b - a for a, b in pairwise(times)), default=0.0)
    return tasks - len(seen), breaks, sum(seen.values()) - len(seen), gap


def kills(log: Path, killed: list[tuple[float, int]], started: float, sleep: float) -> list[Kill]:
    """Per SIGKILL: the tasks the killed process completed before it that completed again after it,
    and the process's pace just before (tasks running then never completed, so they are not counted)."""
    runs: dict[int, list[tuple[float, int]]] = defaultdict(list)  # task -> (time, pid) of each completion
    for line in (log.read_text().splitlines() if log.exists() else []):
        _key, n_text, at, pid = line.split()
        runs[int(n_text)].append((float(at), int(pid)))
    out = []
    for at, pid in killed:
        pace = sum(1 for done in runs.values() for t, p in done if p == pid and at - KILL_PACE <= t < at) / KILL_PACE
        reruns = sum(1 for done in runs.values()
                     if any(p == pid and t < at for t, p in done) and any(t > at for t, _ in done))
        out.append(Kill(round(at - started, 1), reruns, round(pace, 1), round(pace * sleep, 1)))
    return out


def run(scenario: str, bootstrap: str, args: argparse.Namespace, progress: Progress, workers: int,
        fault: Any = None) -> Outcome:
    queue = f"chaos-{uuid.uuid4().hex[:6]}"
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "done.log"
        enqueue(bootstrap, queue, args.tasks, args.keys, args.malformed, args.partitions)
        logs = Path(args.logs) / scenario.replace(" ", "-").replace(",", "") if args.logs else Path(tmp)
        logs.mkdir(parents=True, exist_ok=True)
        crew = Workers(bootstrap, queue, log, workers, args.concurrency, args.sleep_ms / 1000, logs,
                       args.commit_interval)
        bar = progress.add_task(scenario, total=args.tasks)
        started = time.monotonic()
        wall_started = time.time()
        rng = random.Random(7)
        next_fault = started + args.kill_every
        try:
            while time.monotonic() - started < args.timeout:
                time.sleep(0.25)
                done = len({line.split()[1] for line in log.read_text().splitlines()}) if log.exists() else 0
                progress.update(bar, completed=done)
                if done >= args.tasks:
                    break
                if fault is not None and time.monotonic() >= next_fault:
                    next_fault = fault(crew, rng, time.monotonic() - started) or float("inf")
                    next_fault += time.monotonic()
                crew.watch()
            seconds = time.monotonic() - started
            time.sleep(3)  # late duplicates and dead letters land
        finally:
            crew.stop()
        lost, breaks, duplicates, gap = count(log, args.tasks)
        letters = [h.get(names.H_ID, "") for h in read_headers(bootstrap, [names.dlq_topic(queue)])]
        malformed = Counter(i for i in letters if i.startswith("malformed-"))
        return Outcome(scenario, args.tasks, round(seconds, 1), lost, breaks, duplicates, len(malformed),
                       sum(c - 1 for c in malformed.values()), crew.exits, round(gap, 1),
                       kills(log, crew.kills, wall_started, args.sleep_ms / 1000))


def kill_one(crew: Workers, rng: random.Random, _elapsed: float) -> float:
    crew.kill_and_restart(rng.randrange(len(crew.procs)))
    return KILL_EVERY


KILL_EVERY = 10.0


def kill_table(o: Outcome) -> Table:
    """Each kill's re-runs beside the killed worker's pace, and the means."""
    table = Table(title=f"{o.scenario}: tasks the killed worker had completed that ran again")
    for column in ("kill at s", "re-runs", "completions/s before", "running (est.)", "re-runs as s of completions"):
        table.add_column(column, justify="right")
    for k in o.kills:
        table.add_row(f"{k.at:.1f}", str(k.reruns), f"{k.per_second:.0f}", f"{k.running:.1f}",
                      f"{k.reruns_in_seconds:.2f}")
    # A worker killed while it completed nothing (still starting, or without partitions) has nothing
    # to re-run: the means are over the kills of working ones.
    working = [k for k in o.kills if k.per_second > 0] or o.kills
    n = len(working)
    table.add_row(f"mean of {n}", f"{sum(k.reruns for k in working) / n:.0f}",
                  f"{sum(k.per_second for k in working) / n:.0f}", f"{sum(k.running for k in working) / n:.1f}",
                  f"{sum(k.reruns_in_seconds for k in working) / n:.2f}")
    return table


@contextmanager
def cluster(nodes: int) -> Iterator[tuple[DevCluster, str]]:
    """A fresh dev cluster of `nodes` on free ports, removed afterwards."""
    base = next(p for p in range(47092, 48000, 10) if not any(port_open(p + i) for i in range(nodes))
                and not any(port_open(p + 100 + i) for i in range(nodes)))
    with tempfile.TemporaryDirectory(prefix="kqueue-chaos-") as tmp:
        dev = DevCluster(Path(tmp))
        with console.status(f"starting a {nodes}-node Kafka"):
            state, _ = dev.up(nodes=nodes, base_port=base)
        try:
            yield dev, state.bootstrap_servers
        finally:
            dev.down(purge=True)


def main() -> None:
    global KILL_EVERY
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", default="all", choices=("takeover", "outage", "broker-loss", "all"))
    parser.add_argument("--tasks", type=int, default=30_000)
    parser.add_argument("--keys", type=int, default=200)
    parser.add_argument("--malformed", type=int, default=1000)
    parser.add_argument("--sleep-ms", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--kill-every", type=float, default=10.0)
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--logs", default="", help="Keep each worker's stderr in this folder")
    parser.add_argument("--commit-interval", type=float, default=None,
                        help="Pass --commit-interval to every worker [default: the worker's default]")
    parser.add_argument("--no-calm", action="store_true", help="takeover: skip the calm run (only the kills)")
    args = parser.parse_args()
    KILL_EVERY = args.kill_every
    outcomes: list[Outcome] = []
    want = {"takeover", "outage", "broker-loss"} if args.scenario == "all" else {args.scenario}
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=console,
                  transient=True) as progress:
        if "takeover" in want:
            with cluster(1) as (dev, bootstrap):
                if not args.no_calm:
                    outcomes.append(run("3 workers, calm", bootstrap, args, progress, 3))
                outcomes.append(run(f"3 workers, one SIGKILLed every {args.kill_every:g}s", bootstrap, args,
                                    progress, 3, kill_one))
        if "outage" in want:
            with cluster(1) as (dev, bootstrap):

                def outage(crew: Workers, rng: random.Random, elapsed: float) -> float:
                    dev.stop_node(0, hard=True)
                    time.sleep(20)
                    dev.start_node(0)
                    return float("inf")

                outcomes.append(run("1 worker, only broker down 20 s", bootstrap, args, progress, 1, outage))
        if "broker-loss" in want:
            with cluster(3) as (dev, bootstrap):

                def lose(crew: Workers, rng: random.Random, elapsed: float) -> float:
                    dev.stop_node(2, hard=True)
                    return float("inf")

                outcomes.append(run("1 worker, 1 of 3 brokers lost", bootstrap, args, progress, 1, lose))
    table = Table(title=f"chaos: {args.tasks:,} tasks of {args.sleep_ms:g} ms over {args.keys} keys "
                        f"+ {args.malformed} malformed records")
    columns = ("run", "seconds", "lost", "order breaks", "duplicate runs", "malformed in DLQ", "DLQ twice",
               "worker exits", "longest gap s")
    for column in columns:
        table.add_column(column, justify="left" if column == "run" else "right")
    for o in outcomes:
        table.add_row(o.scenario, f"{o.seconds:.1f}", str(o.lost), str(o.order_breaks), f"{o.duplicates:,}",
                      str(o.malformed_dead_lettered), str(o.malformed_twice), str(o.worker_exits),
                      f"{o.longest_gap:.1f}")
    Console(width=170).print(table)
    for o in outcomes:
        if o.kills:
            Console(width=170).print(kill_table(o))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "chaos.json"
    out.write_text(json.dumps({"benchmark": "chaos", "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                               "args": vars(args), "runs": [asdict(o) for o in outcomes],
                               "goals": {"lost": 0, "order_breaks": 0, "malformed_twice": 0, "worker_exits": 0}},
                              indent=2))
    console.print(f"wrote {out}")


if __name__ == "__main__":
    main()
