"""Every benchmark in one run, on one broker and one machine, each row with a ratio to its baseline.

    python benchmarks/run.py [--quick] [--out DIR] [--no-peers]

drain       one worker process, no-op task: the raw confluent-kafka consume loop (baseline), the same loop
            also reading each record's headers (what finding a record's handler costs at least), kqueue sync
            and async with `kqueue consume`'s defaults and with its leanest flags; FastStream with its
            defaults (aiokafka, and confluent-kafka if it installs); Celery and Dramatiq on Redis
enqueue     raw confluent-kafka produce (baseline), SDK enqueue and enqueue_async, FastStream publish,
            Celery .delay, Dramatiq .send
latency     enqueue -> handler start p50/p95/p99, open loop at 25/50/75 % of kqueue's drain rate above
I/O-bound   tasks sleeping 20 ms at --concurrency 8 (baseline), 64, 256, and async at 256
processes   `kqueue consume --processes 1` (baseline) and 2, no-op tasks
group       1 (baseline), 2, 3 and 12 `kqueue consume` in a group, 12 partitions, 20 ms tasks
failures    10 % of tasks failing once, transactions on and off (benchmarks/failures.py)
worker RSS  one `kqueue consume` idle (baseline) and with 10,000 tasks in flight
chaos       (full run only) benchmarks/chaos.py --scenario takeover, in its own cluster: re-runs per SIGKILL

Peers run in their own venvs under ~/.cache/kqueue/bench-peers (created here on first use), as
subprocesses; Redis is Debian's redis-server, started here on loopback. A peer that cannot be
installed or run has a reason in its row instead of a number. --quick (a few minutes, small sizes)
runs peers only if their venvs already exist. Writes run.json, run.png and run.md to --out, and a
full run into benchmarks/results/ also rewrites benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import kqueue  # noqa: E402
from benchmarks import peer_runs, run_rows  # noqa: E402
from benchmarks.common import RESULTS, broker, console  # noqa: E402
from benchmarks.run_report import write_all  # noqa: E402
from benchmarks.run_rows import Result, Sizes  # noqa: E402

GROUP_MEMBERS = (1, 2, 3, 12)
PEER_RECORDS = {True: 2_000, False: 30_000}  # --quick, full: rates, so fewer records than kqueue's rows
DRAIN_NAMES = {"faststream-aiokafka": "FastStream (aiokafka), defaults",
               "faststream-confluent": "FastStream (confluent), defaults",
               "celery": "Celery on Redis, --pool solo", "dramatiq": "Dramatiq on Redis, --processes 1"}
ENQUEUE_NAMES = {"faststream-aiokafka": "FastStream publish (aiokafka)",
                 "faststream-confluent": "FastStream publish (confluent)",
                 "celery": "Celery .delay", "dramatiq": "Dramatiq .send"}


@contextmanager
def maybe_redis(wanted: bool) -> Iterator[str | None]:
    if not wanted:
        yield None
        return
    with peer_runs.redis_server() as url:
        yield url


def peer_rows(bootstrap: str, redis_url: str | None, args: argparse.Namespace, step: Callable[[str], None]
              ) -> tuple[list[Result], list[Result]]:
    """(drain rows, enqueue rows) of the other task queues, without ratios yet."""
    drains: list[Result] = []
    enqueues: list[Result] = []
    records = PEER_RECORDS[args.quick]
    for peer in peer_runs.REQUIREMENTS:
        reason = ""
        if args.no_peers:
            reason = "skipped (--no-peers)"
        elif args.quick and not peer_runs.installed(peer):
            reason = "skipped in --quick: its venv is not installed (a full run installs it)"
        elif not peer.startswith("faststream") and redis_url is None:
            reason = "no redis-server on this machine (apt-get install redis-server)"
        if not reason:
            step(f"installing {peer}" if not peer_runs.installed(peer) else f"peer: {peer}")
            reason = peer_runs.install(peer)
        if reason:
            result = peer_runs.PeerResult(reason=reason)
        else:
            step(f"peer: {peer}, {records:,} records")
            if peer.startswith("faststream"):
                topic = f"run-peer-{uuid.uuid4().hex[:6]}"
                kqueue.App("bench", bootstrap).ensure_queue(topic)  # 6 partitions, as kqueue's rows
                result = peer_runs.faststream(peer.split("-")[1], bootstrap, topic, records)
            else:
                assert redis_url is not None
                result = peer_runs.redis_peer(peer, redis_url, records)
        detail = result.reason or f"{result.version}, {records:,} records, JSON payloads"
        drains.append(Result("drain", DRAIN_NAMES[peer], run_rows.rate(records, result.drain_seconds or 0) or None,
                             "tasks/s", detail=detail))
        enqueues.append(Result("enqueue", ENQUEUE_NAMES[peer],
                               run_rows.rate(records, result.enqueue_seconds or 0) or None, "tasks/s", detail=detail))
    return drains, enqueues


def chaos_result(data: dict[str, Any], name: str, unit: str) -> Result:
    """The median re-runs per kill of a working worker (one that completed tasks in the 2 s before),
    against the issue's bound: the tasks in flight plus 0.2 s of its completions."""
    killed = next(r for r in data["runs"] if "SIGKILL" in r["scenario"])
    kills = [k for k in killed["kills"] if k["per_second"] > 0] or killed["kills"]
    within = sum(1 for k in kills if k["reruns"] <= k["running"] + 0.2 * k["per_second"])
    reruns = [k["reruns"] for k in kills]
    return Result("chaos", name, statistics.median(reruns), unit, baseline="(none: counts)",
                  detail=f"median of {len(kills)} kills (mean {statistics.mean(reruns):.0f}); {within} within the "
                         f"tasks in flight + 0.2 s of completions; {killed['duplicates']:,} duplicate runs, lost "
                         f"{killed['lost']}, order breaks {killed['order_breaks']}, {killed['seconds']} s (chaos.json)")


def chaos_rows(step: Callable[[str], None]) -> list[Result]:
    """chaos.py's takeover scenario through its CLI; its JSON read back from benchmarks/results/."""
    step("benchmarks/chaos.py --scenario takeover (its own cluster)")
    name, unit = "3 workers, one SIGKILLed in turn", "re-runs per SIGKILL"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "chaos.py"), "--scenario", "takeover"],
                          cwd=ROOT, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        return [Result("chaos", name, None, unit, detail=f"run benchmarks/chaos.py (it exited {done.returncode})")]
    try:
        return [chaos_result(json.loads((RESULTS / "chaos.json").read_text()), name, unit)]
    except (OSError, KeyError, StopIteration, ValueError, TypeError) as exc:
        return [Result("chaos", name, None, unit, detail=f"run benchmarks/chaos.py (its JSON: {exc!r})")]


def run_suite(bootstrap: str, args: argparse.Namespace, sizes: Sizes, progress: Progress) -> list[Result]:
    overall = progress.add_task("suite", total=9 if args.quick else 10)

    def step(text: str) -> None:
        progress.update(overall, description=text)

    def section(name: str, build: Callable[[], list[Result]]) -> list[Result]:
        step(name)
        try:
            built = build()
        except (Exception, SystemExit) as exc:  # one broken section must not lose the others' numbers
            built = [Result(name, "(section failed)", None, "", detail=f"{type(exc).__name__}: {exc}")]
        for task_id in list(progress.task_ids):
            if task_id != overall:
                progress.remove_task(task_id)
        progress.advance(overall)
        return built

    with maybe_redis(not args.no_peers) as redis_url:
        drains = section("drain", lambda: run_rows.drain(bootstrap, sizes, step))
        enqueues = section("enqueue", lambda: run_rows.enqueue(bootstrap, sizes, step))
        peers: dict[str, list[Result]] = {}

        def both() -> list[Result]:
            peers["drain"], peers["enqueue"] = peer_rows(bootstrap, redis_url, args, step)
            return []

        failed = section("peers", both)
    rows = [*drains, *run_rows.with_ratios(peers.get("drain", []), drains[0]),
            *enqueues, *run_rows.with_ratios(peers.get("enqueue", []), enqueues[0]), *failed]
    top = next((r.value for r in drains if r.name == "kqueue sync, defaults"), None)
    if top:
        rows += section("latency", lambda: run_rows.latencies(bootstrap, sizes, top, progress, step))
    else:
        rows.append(Result("latency", "enqueue -> start", None, "ms p99", detail="no kqueue drain rate to load from"))
        progress.advance(overall)
    rows += section("I/O-bound (20 ms sleep)", lambda: run_rows.io_bound(bootstrap, sizes, step))
    rows += section("processes", lambda: run_rows.processes(bootstrap, sizes, progress, step))
    rows += section("group", lambda: run_rows.group(bootstrap, sizes, progress, step, GROUP_MEMBERS))
    rows += section("failures", lambda: run_rows.failure_path(bootstrap, sizes, step))
    rows += section("worker RSS", lambda: run_rows.memory(bootstrap, sizes, step))
    if not args.quick:
        rows += section("chaos", lambda: chaos_rows(step))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="Small sizes, one round, peers only if installed")
    parser.add_argument("--out", type=Path, default=RESULTS, help="Folder for run.json, run.png, run.md")
    parser.add_argument("--no-peers", action="store_true", help="Leave FastStream, Celery and Dramatiq out")
    args = parser.parse_args()
    sizes = run_rows.QUICK if args.quick else run_rows.FULL
    started = time.monotonic()
    with broker() as bootstrap, Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                         TimeElapsedColumn(), console=console, transient=True) as progress:
        rows = run_suite(bootstrap, args, sizes, progress)
    seconds = time.monotonic() - started
    title = (f"kqueue benchmark suite{' (--quick)' if args.quick else ''}: one broker, one machine, "
             f"{seconds / 60:.1f} min")
    write_all(args.out, rows, {"command": " ".join(["python", "benchmarks/run.py", *sys.argv[1:]]),
                               "quick": args.quick, "seconds": round(seconds, 1), "sizes": vars(sizes)},
              title, console, page=None if args.quick or args.out != RESULTS else RESULTS.parent / "RESULTS.md")


if __name__ == "__main__":
    main()
