"""`kqueue consume`: run workers for an app's queues."""

from __future__ import annotations

import os
import sys

import typer

from kqueue.cli.common import console, fail, load_cli_app, options, setup_logging
from kqueue.cli.lifetime import child_env
from kqueue.core.priority import DEFAULT_WEIGHTS, parse_weights
from kqueue.cron.beside import start_beside
from kqueue.observe.health import LIVENESS_TIMEOUT
from kqueue.observe.install import METRICS_PORT_ENV, install_operations
from kqueue.observe.summary import SUMMARY_EVERY
from kqueue.transport.config import GROUP_PROTOCOLS
from kqueue.worker.checkpoint import COMMIT_INTERVAL
from kqueue.worker.heap import settle_worker_heap
from kqueue.worker.loop import Worker, WorkerOptions
from kqueue.worker.options import parse_commit_interval
from kqueue.worker.supervisor import supervise


def consume(
    ctx: typer.Context,
    app_spec: str = typer.Option(..., "--app", "-a", help="Your App, as package.module:attribute"),
    group: str = typer.Option(..., "--group", "-g", help="Consumer group: workers of one group share the work"),
    queue: list[str] = typer.Option([], "--queue", "-q", help="Queue to consume (repeatable) [default: all]"),
    concurrency: int = typer.Option(8, "--concurrency", "-c", min=1, help="Handlers running at once"),
    processes: int = typer.Option(1, "--processes", "-p", min=1, help="Worker processes in this group"),
    batch_size: int = typer.Option(500, "--batch-size", min=1, help="Records fetched per poll"),
    grace: float = typer.Option(30.0, "--grace", min=0, help="Seconds in-flight tasks get to finish on stop"),
    commit_interval_text: str = typer.Option(
        f"{COMMIT_INTERVAL:g}", "--commit-interval", metavar="SECONDS",
        help="Seconds between commits of what has settled: after a crash the tasks completed since the last "
             "commit run again (shorter: fewer re-runs, more commit transactions)"),
    weights: str = typer.Option(
        DEFAULT_WEIGHTS.describe(), "--weights",
        help="How handlers are shared among the priority lanes while several have work waiting: high=N,normal=N,"
             "low=N (whole numbers 1-1000; lanes left out keep theirs), or strict: a lower lane only when the "
             "higher ones have nothing waiting"),
    log_level: str = typer.Option("INFO", "--log-level", envvar="KQUEUE_LOG_LEVEL",
                                  help="DEBUG (adds a line per completed and per started task), INFO (a summary "
                                       "line every --summary-interval; a line per failed attempt and dead letter), "
                                       "WARNING (failures, dead letters and trouble only) or ERROR"),
    summary_interval: float = typer.Option(
        SUMMARY_EVERY, "--summary-interval", envvar="KQUEUE_SUMMARY_INTERVAL", min=0,
        help="Seconds between INFO summary lines (completed, retried, dead-lettered, rate, lag); 0: none"),
    log_format: str = typer.Option("text", "--log-format", envvar="KQUEUE_LOG_FORMAT",
                                   help="text, or json: one object per line with the task's fields as keys"),
    metrics_port: int | None = typer.Option(
        None, "--metrics-port", envvar=METRICS_PORT_ENV, min=0, max=65535,
        help="Serve /metrics (Prometheus), /livez and /readyz on this port (with --processes: for all of them)"),
    metrics_host: str = typer.Option("0.0.0.0", "--metrics-host", help="Address the metrics port listens on"),
    liveness_timeout: float = typer.Option(
        LIVENESS_TIMEOUT, "--liveness-timeout", min=1,
        help="/livez fails when the poll loop has not turned for this many seconds"),
    transactions: bool = typer.Option(True, "--transactions/--no-transactions",
                                      help="Settle each batch in one Kafka transaction (exactly-once routing)"),
    route_delays: bool = typer.Option(True, "--router/--no-router",
                                      help="Also move due retries and scheduled tasks (see `kqueue router`)"),
    group_protocol: str = typer.Option("consumer", "--group-protocol",
                                       help="consumer (KIP-848, Kafka 4.0+: every lane balanced per topic) "
                                            "or classic (older brokers)"),
    instance_id: str | None = typer.Option(
        None, "--instance-id", envvar="KQUEUE_INSTANCE_ID",
        help="Static group membership: a restart with the same id takes its partitions back at once "
             "(e.g. the pod name; one live worker per id; --processes children add -0, -1, ...)"),
    max_overrun_threads: int | None = typer.Option(
        None, "--max-overrun-threads", min=0,
        help="Sync handler threads left running past their timeout= before the worker drains and restarts "
             "its process to reclaim them [default: --concurrency]"),
    cron: bool = typer.Option(True, "--cron/--no-cron",
                              help="Also run the cron scheduler when the app has @app.cron schedules "
                                   "(see `kqueue cron run`; one leader among all, each tick fires once)"),
) -> None:
    """Run workers: fetch, run handlers in key order, commit only what is settled."""
    setup_logging(log_level, log_format)
    try:
        commit_interval = parse_commit_interval(commit_interval_text)
    except ValueError as exc:
        raise fail(str(exc), 2) from None
    if group_protocol not in GROUP_PROTOCOLS:
        raise fail(f"--group-protocol must be consumer or classic, not {group_protocol!r}", 2)
    try:
        lane_weights = parse_weights(weights)
    except ValueError as exc:
        raise fail(str(exc), 2) from None
    opts = options(ctx)
    if processes > 1:
        child = [sys.executable, "-m", "kqueue"]
        if opts.bootstrap_servers:
            child += ["--bootstrap-servers", opts.bootstrap_servers]
        if opts.topic_prefix:
            child += ["--topic-prefix", opts.topic_prefix]
        child += ["consume", "--app", app_spec, "--group", group, "--concurrency", str(concurrency),
                  "--batch-size", str(batch_size), "--grace", str(grace), "--commit-interval", str(commit_interval),
                  "--log-level", log_level,
                  "--log-format", log_format, "--summary-interval", str(summary_interval),
                  "--liveness-timeout", str(liveness_timeout),
                  "--transactions" if transactions else "--no-transactions",
                  "--router" if route_delays else "--no-router", "--group-protocol", group_protocol]
        if max_overrun_threads is not None:
            child += ["--max-overrun-threads", str(max_overrun_threads)]
        if not cron:
            child += ["--no-cron"]
        child += ["--weights", lane_weights.describe()]
        for q in queue:
            child += ["--queue", q]
        commands = [child + (["--instance-id", f"{instance_id}-{i}"] if instance_id else []) for i in range(processes)]
        raise typer.Exit(_supervise(commands, grace, metrics_port, metrics_host, liveness_timeout))
    app = load_cli_app(app_spec, opts)
    unknown = sorted(set(queue) - set(app.queues()))
    if unknown:
        raise fail(f"{app_spec} has no tasks on queue(s) {', '.join(unknown)} (it has: "
                   f"{', '.join(app.queues()) or 'none'})", 2)
    try:
        ops = install_operations(app, metrics_port, metrics_host, liveness_timeout, summary_interval)
    except OSError as exc:
        raise fail(f"cannot serve metrics on {metrics_host}:{metrics_port}: {exc.strerror or exc}", 2) from None
    try:
        worker = Worker(app, WorkerOptions(group=group, queues=list(queue), concurrency=concurrency,
                                           weights=lane_weights,
                                           batch_size=batch_size, grace=grace, commit_interval=commit_interval,
                                           transactions=transactions,
                                           route_delays=route_delays, group_protocol=group_protocol,
                                           max_overrun_threads=max_overrun_threads, instance_id=instance_id))
    except ValueError as exc:
        raise fail(str(exc), 2) from None
    worker.install_signal_handlers()
    served = f"; metrics, /livez, /readyz on port {ops.server.port}" if ops.server is not None else ""
    console.print(f"consuming {', '.join(worker.queues)} as group {group} "
                  f"(concurrency {concurrency}) from {app.bootstrap_servers}{served}", highlight=False)
    settle_worker_heap()
    scheduler = start_beside(app, cron)
    try:
        stats = worker.run()
    finally:
        if scheduler is not None:
            scheduler.stop()
        ops.close()
    console.print(f"stopped: {stats.completed} completed, {stats.retried} retried, "
                  f"{stats.dead_lettered} dead-lettered, {stats.delivered} delivered from delay tiers", highlight=False)
    if worker.recycle_reason is not None:
        _restart_process(worker.recycle_reason)


def _supervise(commands: list[list[str]], grace: float, metrics_port: int | None, host: str,
               liveness_timeout: float) -> int:
    """Run the children; their metrics and beats are collected (and served if a port is given)."""
    from kqueue.observe.children import SupervisorOperations

    try:
        ops = SupervisorOperations(len(commands), metrics_port, host, liveness_timeout)
    except OSError as exc:
        raise fail(f"cannot serve metrics on {host}:{metrics_port}: {exc.strerror or exc}", 2) from None
    if ops.server is not None:
        console.print(f"metrics, /livez, /readyz for {len(commands)} worker processes on port {ops.server.port}",
                      highlight=False)
    try:
        # child_env: a worker process ends with the supervisor even if it is killed outright
        return supervise(commands, grace, ops.child_env(child_env(os.environ)), ops.health)
    finally:
        ops.close()


def _restart_process(reason: str) -> None:
    """Replace this process with a fresh copy of itself (same pid, same arguments): the only way to
    be rid of threads Python cannot stop. Works alike alone, under --processes and in a pod."""
    console.print(f"restarting: {reason}", highlight=False)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "kqueue", *sys.argv[1:]])
