"""`kqueue demo`: a real broker (started if needed), tasks enqueued, a real `kqueue consume`, a summary."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import typer
from rich.table import Table

from kqueue.cli.common import console, fail, options
from kqueue.cli.demo_api import DemoApi
from kqueue.cli.lifetime import ChildProcesses
from kqueue.core.names import H_ERROR_TYPE, H_ID, dlq_topic
from kqueue.core.topology import tier_topics
from kqueue.dev.cluster import ClusterError, DevCluster, port_open
from kqueue.dev.jars import ToolMissing
from kqueue.observe.scrape import Samples, scrape, total
from kqueue.transport.inspect import read_headers

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
    serve: bool | None = typer.Option(None, "--serve/--no-serve",
                                      help="Keep the dashboard up after the summary until Ctrl-C [default: on a "
                                           "terminal]"),
) -> None:
    """Enqueue example tasks, run them through `kqueue consume`, print what became of them; `kqueue api`
    serves the dashboard meanwhile."""
    bootstrap = _bootstrap(options(ctx).bootstrap_servers)
    os.environ["KQUEUE_BOOTSTRAP_SERVERS"] = bootstrap
    prefix = options(ctx).topic_prefix
    if prefix:
        os.environ["KQUEUE_TOPIC_PREFIX"] = prefix  # its worker and API children use the same topics
    from kqueue.demo import tasks as demo_tasks  # its App reads the bootstrap servers on import

    app = demo_tasks.app
    app.topic_prefix = prefix
    for queue in app.queues():
        app.ensure_queue(queue)
    dlq_topics = [dlq_topic(q, prefix) for q in app.queues()]

    rng = random.Random(7)
    emails = tasks * 3 // 4
    kinds: dict[str, str] = {}  # task id -> what the demo expects of it
    for i in range(emails):
        roll = rng.random()
        tags = ["bounce"] if roll < 0.04 else ["flaky"] if roll < 0.14 else []
        task_id = demo_tasks.send_email.enqueue(
            {"to": f"user{i % 40}@example.com", "subject": "hello", "tags": tags}, key=f"user-{i % 40}")
        kinds[task_id] = "send_email"
    for i in range(tasks - emails):
        width = 0 if rng.random() < 0.05 else 640
        task_id = demo_tasks.resize_image.enqueue({"image": f"img-{i}.png", "width": width}, key=f"album-{i % 10}")
        kinds[task_id] = "resize_image"
    app.flush()
    console.print(f"enqueued {tasks} tasks; starting `kqueue consume --app kqueue.demo.tasks:app "
                  f"--group {DEMO_GROUP}`", highlight=False)

    metrics_url = f"http://127.0.0.1:{_free_port()}/metrics"
    figures: Samples = {}
    # SIGTERM or Ctrl-C from here on stops the worker and the API before the demo exits.
    with tempfile.TemporaryDirectory(prefix="kqueue-demo-") as tmp, ChildProcesses() as children:
        api = DemoApi(children, bootstrap, Path(tmp) / "status.db")
        console.print(f"dashboard: {api.url}/  (REST API {api.url}/api/v1, OpenAPI {api.url}/openapi.json)",
                      highlight=False)
        log = Path(tmp) / "completed.log"
        worker = children.start(
            [sys.executable, "-m", "kqueue", "consume", "--app", "kqueue.demo.tasks:app", "--group", DEMO_GROUP,
             # ERROR: the dead letters it makes on purpose are in the summary, not a line each on the console
             "--concurrency", "16", "--log-level", "ERROR", "--metrics-host", "127.0.0.1",
             "--metrics-port", metrics_url.rsplit(":", 1)[1].split("/")[0]],
            {**os.environ, "KQUEUE_BOOTSTRAP_SERVERS": bootstrap, "KQUEUE_DEMO_LOG": str(log)},
            stop_within=90.0, stdout=subprocess.DEVNULL,
        )
        started = time.monotonic()
        completed: dict[str, int] = {}
        dead: dict[str, dict[str, str]] = {}
        try:
            with console.status("running") as status:
                while time.monotonic() - started < timeout and worker.poll() is None:
                    completed = _completions(log, kinds)
                    dead = {h[H_ID]: h for h in read_headers(bootstrap, dlq_topics) if h.get(H_ID) in kinds}
                    settled = len(completed) + len(dead)
                    status.update(f"settled {settled}/{tasks}: {len(completed)} completed, {len(dead)} dead-lettered")
                    if settled >= tasks:
                        break
                    time.sleep(0.5)
            figures = _final_figures(metrics_url, len(completed) + len(dead))
        finally:
            code = children.stop(worker)
        completed = _completions(log, kinds)
        agreed = api.counts(kinds, len(completed), len(dead))
        if serve if serve is not None else sys.stdin.isatty():
            api.serve_until_interrupted()
        api.stop()
    took = time.monotonic() - started
    tier_topics_all = [t for q in app.queues() for t in tier_topics(q, app.tiers.names, prefix)]
    retried = {h[H_ID] for h in read_headers(bootstrap, tier_topics_all) if h.get(H_ID) in kinds}

    table = Table(title="kqueue demo")
    for column in ("task type", "enqueued", "completed", "retried", "dead-lettered", "errors seen"):
        table.add_column(column, justify="left" if column in ("task type", "errors seen") else "right",
                         overflow="fold")
    for name in ("send_email", "resize_image"):
        mine = {t for t, k in kinds.items() if k == name}
        errors = Counter(h.get(H_ERROR_TYPE, "?") for t, h in dead.items() if t in mine)
        errors.update(h.get(H_ERROR_TYPE, "?") for h in read_headers(bootstrap, tier_topics_all)
                      if h.get(H_ID) in mine and h.get(H_ID) not in dead)
        table.add_row(name, str(len(mine)), str(len(mine & set(completed))), str(len(mine & retried)),
                      str(len(mine & set(dead))), ", ".join(sorted(errors)))
    table.add_row("[bold]all[/bold]", str(tasks), str(len(completed)), str(len(retried)), str(len(dead)), "")
    console.print(table)
    console.print(f"{len(completed) + len(dead)} of {tasks} tasks settled in {took:.1f}s by `kqueue consume` "
                  f"(exit {code}); dead letters: `kqueue dlq list demo.email`", highlight=False)
    _print_figures(metrics_url, figures)
    console.print(f"the status view (GET /api/v1/tasks/{{id}} for each task) says: {agreed['completed']} completed, "
                  f"{agreed['failed']} failed", highlight=False)
    lag = tasks - len(completed) - len(dead)
    if lag != 0:
        raise fail(f"{lag} task(s) were not settled within {timeout:.0f}s")
    if set(completed) & set(dead):
        raise fail("a task both completed and was dead-lettered")
    if (agreed["completed"], agreed["failed"]) != (len(completed), len(dead)):
        raise fail("the status view disagrees with what the worker did")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _final_figures(url: str, settled: int, timeout: float = 5.0) -> Samples:
    """The worker's metrics once they count every settled task (tallies reach /metrics each second)."""
    deadline = time.monotonic() + timeout
    figures = scrape(url)
    while time.monotonic() < deadline:
        final = total(figures, "kqueue_tasks_total", outcome="completed") + total(
            figures, "kqueue_tasks_total", outcome="dead_lettered")
        if final >= settled:
            break
        time.sleep(0.25)
        figures = scrape(url)
    return figures


def _print_figures(url: str, figures: Samples) -> None:
    """A few of the worker's own metrics, as Prometheus scraped them."""
    if not figures:
        console.print(f"the worker's metrics at {url} did not answer", highlight=False)
        return
    table = Table(title=f"worker metrics (served at {url} while it ran; also /livez and /readyz)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for outcome in ("completed", "retried", "dead_lettered"):
        count = total(figures, "kqueue_tasks_total", outcome=outcome)
        table.add_row(f'kqueue_tasks_total{{outcome="{outcome}"}}', f"{count:.0f}")
    runs = total(figures, "kqueue_task_run_seconds_count")
    if runs:
        mean = total(figures, "kqueue_task_run_seconds_sum") / runs
        table.add_row("mean handler run time", f"{mean * 1000:.1f} ms")
    commits = total(figures, "kqueue_commit_seconds_count")
    if commits:
        table.add_row("commits (transactions)", f"{commits:.0f}")
        table.add_row("mean commit latency", f"{total(figures, 'kqueue_commit_seconds_sum') / commits * 1000:.1f} ms")
    console.print(table)


def _completions(log: Path, kinds: dict[str, str]) -> dict[str, int]:
    """Task id -> the attempt that completed it, for this run's tasks."""
    if not log.exists():
        return {}
    out = {}
    for line in log.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] in kinds:
            out[parts[0]] = int(parts[1])
    return out
