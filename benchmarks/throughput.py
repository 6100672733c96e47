"""Worker and enqueue throughput, side by side with raw confluent-kafka loops on one broker, one run.

    python benchmarks/throughput.py [--records 100000] [--partitions 6] [--rounds 3] [--observe] [--defaults]
                                    [--pairs-only]

R        raw Consumer.consume(1000) + fastavro decode of every record (the floor under any worker)
R+h      R, also reading each record's headers into a dict (what finding a record's handler costs at least)
K        kqueue worker, no-op sync handler          (goal >= 0.3x R)
K-async  kqueue worker, no-op async handler
K+ops    (--observe) K with the operations middleware of `kqueue consume --metrics-port`: metrics,
         lag probe, health, lifecycle log (budget: >= 0.9x K). Each K+ops row runs right beside K in
         every round (in turn before and after it) and its ratio is the median of the rounds' K/K+ops
         ratios: this machine's speed drifts by tens of percent within a minute, and a ratio of two
         medians taken minutes apart would carry that drift.
K+ops+log (--observe) K+ops with the lifecycle log on at INFO, JSON format, to a null stream
K+ops+trace (--observe) K+ops plus tracing into an SDK tracer provider with no exporter
kqueue consume defaults (--defaults) the worker as `kqueue consume` runs it with no flags: logging set
         up as it does (INFO, text, here into a null stream), its middleware (the lifecycle log and the
         summary line every 10 s). Paired like K+ops with
leanest  (--defaults) the same worker with every optional output off (`--log-level ERROR
         --summary-interval 0`, no metrics port: no middleware at all). Goal: defaults >= 0.9x leanest.
K every Ns (--commit-intervals A,B) K committing every A s beside K committing every B s, paired
         like the defaults (ABBA over the rounds): what a shorter commit interval costs.
raw produce   Producer.produce of fastavro-encoded values, acks=all + idempotent
SDK enqueue   task.enqueue(payload), same producer settings (goal >= 0.5x raw produce)
All read the same pre-filled topic (the one SDK enqueue wrote), each with a fresh consumer group.
Every worker run starts with the garbage-collector settings `kqueue consume` uses (worker/heap.py).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import statistics
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition
from fastavro import schemaless_reader, schemaless_writer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import kqueue
from benchmarks.common import Row, Stopwatch, broker, console, report
from kqueue.core.codec import SOE_HEADER_LEN, AvroSchema
from kqueue.transport.config import producer_config
from kqueue.worker.heap import settle_worker_heap
from kqueue.worker.loop import Worker, WorkerOptions

DEFAULTS = "kqueue consume defaults"
LEANEST = "leanest"
SCHEMA = AvroSchema.from_file(Path(__file__).resolve().parents[1] / "schemas" / "send_email.avsc")


def payload(i: int) -> dict[str, Any]:
    return {"to": f"user{i}@example.com", "subject": "hello", "body": "x" * 64, "priority": i % 5,
            "tags": ["bench"], "reply_to": None}


def raw_produce(bootstrap: str, topic: str, records: int) -> float:
    producer = Producer(producer_config(bootstrap))
    watch = Stopwatch()
    for i in range(records):
        buffer = io.BytesIO()
        buffer.write(SCHEMA.prefix)
        schemaless_writer(buffer, SCHEMA.parsed, payload(i))
        while True:
            try:
                producer.produce(topic, value=buffer.getvalue(), key=f"user-{i % 1000}".encode())
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    producer.flush(60)
    return watch.elapsed()


def sdk_enqueue(app: kqueue.App, task: kqueue.TaskDef, records: int) -> float:
    app.ensure_queue(task.queue)
    watch = Stopwatch()
    for i in range(records):
        task.enqueue(payload(i), key=f"user-{i % 1000}")
    app.flush(60)
    return watch.elapsed()


def raw_consume(bootstrap: str, topic: str, records: int, read_headers: bool = False) -> float:
    """The raw loop; read_headers: also turn each record's headers into a dict and read kq-type, the
    least any worker must do to find a record's handler (confluent-kafka builds the header list in C)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-raw-{uuid.uuid4().hex[:6]}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    meta = consumer.list_topics(topic, timeout=10)
    consumer.assign([TopicPartition(topic, p, 0) for p in meta.topics[topic].partitions])
    seen = 0
    watch: Stopwatch | None = None
    while seen < records:
        batch = consumer.consume(1000, timeout=1.0)
        if batch and watch is None:
            watch = Stopwatch()
        for msg in batch:
            value = msg.value()
            if value is not None and msg.error() is None:
                if read_headers:
                    dict(msg.headers() or ()).get("kq-type")
                schemaless_reader(io.BytesIO(value[SOE_HEADER_LEN:]), SCHEMA.parsed, None)
                seen += 1
    consumer.close()
    assert watch is not None
    return watch.elapsed()


def worker_run(app: kqueue.App, queue: str, records: int, concurrency: int,
               options: dict[str, Any] | None = None) -> float:
    """Seconds from the worker's first poll to its `records`-th completion. `options`: the WorkerOptions
    fields to set besides group, queues and concurrency (None: this file's batch 1000, commit every 1 s;
    {}: the defaults of `kqueue consume`)."""
    settle_worker_heap()  # as `kqueue consume` does before its worker runs
    chosen = {"batch_size": 1000, "commit_interval": 1.0} if options is None else options
    worker = Worker(app, WorkerOptions(group=f"bench-k-{uuid.uuid4().hex[:6]}", queues=[queue],
                                       concurrency=concurrency, **chosen))
    marks: dict[str, Stopwatch] = {}

    def done(w: Worker) -> bool:
        if "first" not in marks and w.stats.polled:
            marks["first"] = Stopwatch()
        finished = w.counts.completed >= records
        if finished and "elapsed" not in marks:
            marks["end"] = marks["first"]
        return finished

    stats = worker.run(until=done)
    if stats.completed < records or stats.dead_lettered:
        raise SystemExit(f"worker settled {stats.completed} completed, {stats.dead_lettered} dead-lettered")
    return marks["end"].elapsed()


def _observed_apps(bootstrap: str, queue: str, partitions: int) -> dict[str, kqueue.App]:
    """The sync no-op app again, with the operations middleware on (and tracing, no exporter)."""
    from opentelemetry.sdk.trace import TracerProvider

    from kqueue.observe.install import install_operations
    from kqueue.observe.tracing import TracingMiddleware

    apps: dict[str, kqueue.App] = {}
    for name, traced in (("K+ops", False), ("K+ops+log", False), ("K+ops+trace", True)):
        middleware = [TracingMiddleware(TracerProvider())] if traced else []
        app = kqueue.App("bench", bootstrap, partitions=partitions, middleware=middleware)
        app.task(queue=queue, name="noop", schema=SCHEMA.parsed)(lambda payload: None)
        install_operations(app, metrics_port=0, host="127.0.0.1")
        apps[name] = app
    return apps


@contextlib.contextmanager
def _task_log() -> Iterator[None]:
    """The `kqueue.task` lines on, as `kqueue consume --log-format json` writes them, into a null stream."""
    from kqueue.observe.logs import formatter

    logger = logging.getLogger("kqueue.task")
    handler = logging.StreamHandler(open(os.devnull, "w"))  # noqa: SIM115  # closed below
    handler.setFormatter(formatter("json"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)
        logger.propagate = True
        handler.stream.close()


def _observed_run(name: str, app: kqueue.App, queue: str, n: int, concurrency: int) -> float:
    if name != "K+ops+log":
        return worker_run(app, queue, n, concurrency)
    with _task_log():
        return worker_run(app, queue, n, concurrency)


@contextlib.contextmanager
def _consume_logging() -> Iterator[None]:
    """The root logger as `kqueue consume` sets it up by default (`setup_logging("INFO", "text")`),
    writing into a null stream; put back afterwards."""
    from kqueue.observe.logs import formatter

    root = logging.getLogger()
    saved = (root.level, root.handlers[:])
    handler = logging.StreamHandler(open(os.devnull, "w"))  # noqa: SIM115  # closed below
    handler.setFormatter(formatter("text"))
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.setLevel(saved[0])
        root.handlers[:] = saved[1]
        handler.stream.close()


def defaults_apps(bootstrap: str, queue: str, partitions: int,
                  handler: Callable[..., Any] = lambda payload: None) -> dict[str, kqueue.App]:
    """The no-op app twice: with what `kqueue consume` adds by default, and with nothing."""
    from kqueue.observe.install import install_operations

    apps: dict[str, kqueue.App] = {}
    for name in (DEFAULTS, LEANEST):
        app = kqueue.App("bench", bootstrap, partitions=partitions)
        app.task(queue=queue, name="noop", schema=SCHEMA.parsed)(handler)
        if name == DEFAULTS:
            with _consume_logging():  # what is installed depends on the level, as in `kqueue consume`
                install_operations(app, metrics_port=None)
        apps[name] = app
    return apps


def defaults_run(name: str, app: kqueue.App, queue: str, n: int, concurrency: int,
                 options: dict[str, Any] | None = None) -> float:
    if name != DEFAULTS:
        return worker_run(app, queue, n, concurrency, options)
    if options is None:  # kqueue consume's own commit interval (the leanest row commits every 1 s)
        options = {"batch_size": 1000, "commit_interval": WorkerOptions(group="").commit_interval}
    with _consume_logging():
        return worker_run(app, queue, n, concurrency, options)


def paired_ratio(k_seconds: list[float], other_seconds: list[float]) -> float:
    """The median over rounds of K's time / the other's time, each pair run side by side."""
    return statistics.median(k / other for k, other in zip(k_seconds, other_seconds, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3, help="Runs of each, interleaved; medians are reported")
    parser.add_argument("--observe", action="store_true", help="Also run K with metrics and tracing on")
    parser.add_argument("--defaults", action="store_true",
                        help="Also run `kqueue consume`'s default worker beside the leanest one")
    parser.add_argument("--commit-intervals", default="",
                        help="A,B: also run K committing every A s beside K committing every B s (e.g. 0.5,0.1)")
    parser.add_argument("--pairs-only", action="store_true",
                        help="Only the paired rows (K and --observe's, --defaults'): no raw or enqueue rows")
    args = parser.parse_args()
    n = args.records
    with broker() as bootstrap:
        queue = f"bench-{uuid.uuid4().hex[:6]}"
        sync_app = kqueue.App("bench", bootstrap, partitions=args.partitions)
        async_app = kqueue.App("bench-async", bootstrap, partitions=args.partitions)

        @sync_app.task(queue=queue, name="noop", schema=SCHEMA.parsed)
        def noop(payload: dict[str, Any]) -> None:
            return None

        @async_app.task(queue=queue, name="noop", schema=SCHEMA.parsed)
        async def noop_async(payload: dict[str, Any]) -> None:
            return None

        raw_topic = f"{queue}-raw"
        sync_app.ensure_queue(raw_topic)
        sync_app.ensure_queue(f"{queue}-sdk")
        sdk_task = kqueue.App("bench", bootstrap, partitions=args.partitions).task(
            queue=f"{queue}-sdk", name="noop", schema=SCHEMA.parsed)(lambda payload: None)
        defaults = defaults_apps(bootstrap, queue, args.partitions) if args.defaults else {}
        observed = _observed_apps(bootstrap, queue, args.partitions) if args.observe else {}
        singles = [] if args.pairs_only else ["R", "R+h", "K-async", "raw produce", "SDK enqueue"]
        with_k = bool(observed) or not args.pairs_only
        intervals = {f"K every {float(x):g}s": float(x) for x in args.commit_intervals.split(",") if x}
        names = [*singles, *(["K"] if with_k else []), *observed, *defaults, *intervals]
        runs: dict[str, list[float]] = {name: [] for name in names}
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=console,
                      transient=True) as progress:
            bar = progress.add_task("filling the topic", total=args.rounds * len(names) + 1)
            sdk_enqueue(sync_app, noop, n)  # the topic every consumer run reads, each with a fresh group
            progress.advance(bar)
            for round_no in range(1, args.rounds + 1):
                beside_k = [(name, lambda name=name, app=app: _observed_run(name, app, queue, n, args.concurrency))
                            for name, app in observed.items()]
                k_run = ("K", lambda: worker_run(sync_app, queue, n, args.concurrency))
                # K+ops right beside K either way (the budget's pair), the costlier rows further out.
                paired = [k_run, *beside_k] if round_no % 2 else [*reversed(beside_k), k_run]
                # The defaults and the leanest worker side by side, in turn first (ABBA over the rounds).
                pair = [(name, lambda name=name, app=app: defaults_run(name, app, queue, n, args.concurrency))
                        for name, app in defaults.items()]
                pair = pair if round_no % 2 else pair[::-1]
                every = [(name, lambda seconds=seconds: worker_run(
                             sync_app, queue, n, args.concurrency, {"batch_size": 1000, "commit_interval": seconds}))
                         for name, seconds in intervals.items()]
                pair += every if round_no % 2 else every[::-1]
                singles_runs = {
                    "raw produce": lambda: raw_produce(bootstrap, raw_topic, n),
                    "SDK enqueue": lambda: sdk_enqueue(sdk_task.app, sdk_task, n),
                    "R": lambda: raw_consume(bootstrap, queue, n),
                    "R+h": lambda: raw_consume(bootstrap, queue, n, read_headers=True),
                    "K-async": lambda: worker_run(async_app, queue, n, args.concurrency),
                }
                for name, run in (
                    *[(single, singles_runs[single]) for single in singles],
                    *(paired if with_k else []),
                    *pair,
                ):
                    progress.update(bar, description=f"round {round_no}: {name}")
                    runs[name].append(run())
                    progress.advance(bar)
        med = {name: statistics.median(seconds) for name, seconds in runs.items()}
        rows = []
        if singles:
            rows += [
                Row("R raw consume+decode", n, med["R"]),
                Row("R+h R reading headers too", n, med["R+h"], "R", med["R"] / med["R+h"]),
                Row("K worker sync no-op", n, med["K"], "R", med["R"] / med["K"]),
                Row("K-async worker async no-op", n, med["K-async"], "R", med["R"] / med["K-async"]),
                Row("raw produce", n, med["raw produce"]),
                Row("SDK enqueue", n, med["SDK enqueue"], "raw produce", med["raw produce"] / med["SDK enqueue"]),
            ]
        elif with_k:
            rows.append(Row("K worker sync no-op", n, med["K"]))
        rows += [Row(name, n, med[name], "K, paired", paired_ratio(runs["K"], runs[name])) for name in observed]
        ratios = {name: [k / o for k, o in zip(runs["K"], runs[name], strict=True)] for name in observed}
        if defaults:
            rows += [Row(LEANEST, n, med[LEANEST]),
                     Row(DEFAULTS, n, med[DEFAULTS], "leanest, paired", paired_ratio(runs[LEANEST], runs[DEFAULTS]))]
            ratios[DEFAULTS] = [lean / d for lean, d in zip(runs[LEANEST], runs[DEFAULTS], strict=True)]
        if len(intervals) == 2:
            first, second = intervals
            rows += [Row(first, n, med[first]),
                     Row(second, n, med[second], f"{first}, paired", paired_ratio(runs[first], runs[second]))]
            ratios[second] = [a / b for a, b in zip(runs[first], runs[second], strict=True)]
        report(f"throughput, {n:,} records, {args.partitions} partitions, median of {args.rounds}", rows,
               "throughput", {"goals": {"K/R": 0.3, "SDK/raw produce": 0.5, "K+ops/K": 0.9,
                                        "defaults/leanest": 0.9},
                              "concurrency": args.concurrency, "seconds_per_round": runs,
                              "ratios_per_round": ratios, "command": " ".join(sys.argv)})


if __name__ == "__main__":
    main()
