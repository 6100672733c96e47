"""`kqueue demo`: a real broker (started if needed), tasks enqueued, a real `kqueue consume`, a summary."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter

import typer
from rich.table import Table

from kqueue.cli.common import console, fail, options
from kqueue.core.names import H_ID, H_TYPE, dlq_topic
from kqueue.core.topology import worker_topics
from kqueue.dev.cluster import ClusterError, DevCluster, port_open
from kqueue.dev.jars import ToolMissing
from kqueue.transport.inspect import read_headers, topic_depths

DEMO_GROUP = "kqueue-demo"


def _bootstrap(explicit: str | None) -> str:
    if explicit:
        return explicit
    if port_open(9092):
        return "localhost:9092"
    try:
        with console.status("No Kafka configured: starting a local one (kqueue dev up)") as status:
            state, _ = DevCluster().up(progress=lambda m: status.update(m))
    except (ClusterError, ToolMissing) as exc:
        raise fail(str(exc)) from None
    console.print(f"local Kafka running at {state.bootstrap_servers} (stop it with `kqueue dev down`)",
                  highlight=False)
    return state.bootstrap_servers


def demo(
    ctx: typer.Context,
    tasks: int = typer.Option(400, "--tasks", "-n", min=1, help="How many tasks to enqueue"),
    timeout: float = typer.Option(120.0, "--timeout", help="Give up waiting after this many seconds"),
) -> None:
    """Enqueue example tasks, run them through `kqueue consume`, print what became of them."""
    bootstrap = _bootstrap(options(ctx).bootstrap_servers)
    os.environ["KQUEUE_BOOTSTRAP_SERVERS"] = bootstrap
    from kqueue.demo import tasks as demo_tasks  # its App reads the bootstrap servers on import

    app = demo_tasks.app
    topics = [t for q in app.queues() for t in worker_topics(q)]
    for queue in app.queues():
        app.ensure_queue(queue)
    dlq_topics = [dlq_topic(q) for q in app.queues()]

    rng = random.Random(7)
    emails = tasks * 3 // 4
    planned = {"send_email": emails, "resize_image": tasks - emails}
    expect_fail = {"send_email": 0, "resize_image": 0}
    ids: set[str] = set()
    for i in range(emails):
        bounce = rng.random() < 0.05  # about 5% fail on purpose and end in the DLQ
        expect_fail["send_email"] += bounce
        ids.add(demo_tasks.send_email.enqueue(
            {"to": f"user{i % 40}@example.com", "subject": "hello", "tags": ["bounce"] if bounce else []},
            key=f"user-{i % 40}",
        ))
    for i in range(tasks - emails):
        width = 0 if rng.random() < 0.05 else 640
        expect_fail["resize_image"] += width == 0
        ids.add(demo_tasks.resize_image.enqueue({"image": f"img-{i}.png", "width": width},
                                                key=f"album-{i % 10}"))
    app.flush()
    console.print(f"enqueued {tasks} tasks; starting `kqueue consume --app kqueue.demo.tasks:app "
                  f"--group {DEMO_GROUP}`", highlight=False)

    worker = subprocess.Popen(
        [sys.executable, "-m", "kqueue", "consume", "--app", "kqueue.demo.tasks:app", "--group", DEMO_GROUP,
         "--concurrency", "16", "--log-level", "WARNING"],
        stdout=subprocess.DEVNULL, env={**os.environ, "KQUEUE_BOOTSTRAP_SERVERS": bootstrap},
    )
    started = time.monotonic()
    lag = tasks
    try:
        with console.status("running") as status:
            while time.monotonic() - started < timeout:
                lag = sum(d.lag for d in topic_depths(bootstrap, topics, DEMO_GROUP))
                status.update(f"settled {max(0, tasks - lag)}/{tasks} (group lag {lag})")
                if lag == 0 or worker.poll() is not None:
                    break
                time.sleep(0.5)
    finally:
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(timeout=60)
    took = time.monotonic() - started
    # Count this run's dead letters by reading them back, per type.
    dead_by_type: Counter[str] = Counter(
        h.get(H_TYPE, "?") for h in read_headers(bootstrap, dlq_topics) if h.get(H_ID) in ids
    )
    dead = sum(dead_by_type.values())
    table = Table(title="kqueue demo")
    for column in ("task type", "enqueued", "completed", "dead-lettered", "error"):
        table.add_column(column, justify="left" if column in ("task type", "error") else "right")
    errors = {"send_email": "ConnectionRefusedError", "resize_image": "ValueError"}
    for name, count in planned.items():
        table.add_row(name, str(count), str(count - dead_by_type[name]), str(dead_by_type[name]), errors[name])
    table.add_row("[bold]all[/bold]", str(tasks), str(tasks - dead), str(dead), "")
    console.print(table)
    console.print(f"{tasks} tasks settled in {took:.1f}s by `kqueue consume` (exit {code}); "
                  f"dead letters are in {', '.join(dlq_topics)}", highlight=False)
    if lag != 0:
        raise fail(f"{lag} task(s) were not settled within {timeout:.0f}s")
    if dict(dead_by_type) != {k: v for k, v in expect_fail.items() if v}:
        raise fail(f"expected dead letters {expect_fail}, found {dict(dead_by_type)}")
