"""`kqueue router`: the delay router on its own (workers run it too; this is for queues whose
workers run with --no-router, or to keep scheduled tasks moving while no worker runs)."""

from __future__ import annotations

import typer

from kqueue.cli.common import console, fail, options, resolve_bootstrap, setup_logging
from kqueue.core.names import DEFAULT_DELAY_TIERS
from kqueue.observe.install import METRICS_PORT_ENV, install_operations
from kqueue.sdk.app import App
from kqueue.worker.loop import Worker, WorkerOptions


def router(
    ctx: typer.Context,
    queue: list[str] = typer.Option(..., "--queue", "-q", help="Queue whose delay tiers to route (repeatable)"),
    group: str = typer.Option("kqueue-router", "--group", "-g", help="Consumer group of the routers"),
    tiers: str = typer.Option(",".join(DEFAULT_DELAY_TIERS), "--tiers", help="The queues' delay tiers"),
    log_level: str = typer.Option("INFO", "--log-level", envvar="KQUEUE_LOG_LEVEL",
                                  help="DEBUG, INFO, WARNING or ERROR"),
    log_format: str = typer.Option("text", "--log-format", envvar="KQUEUE_LOG_FORMAT", help="text or json"),
    metrics_port: int | None = typer.Option(None, "--metrics-port", envvar=METRICS_PORT_ENV, min=0,
                                            max=65535, help="Serve /metrics, /livez and /readyz on this port"),
    metrics_host: str = typer.Option("0.0.0.0", "--metrics-host", help="Address the metrics port listens on"),
) -> None:
    """Move due records from Q.delay.<tier> to their target (or a shorter tier), nothing else."""
    setup_logging(log_level, log_format)
    opts = options(ctx)
    try:
        app = App("router", resolve_bootstrap(opts.bootstrap_servers), topic_prefix=opts.topic_prefix,
                  delay_tiers=[t.strip() for t in tiers.split(",") if t.strip()])
    except ValueError as exc:
        raise fail(f"--tiers: {exc}", 2) from None
    try:
        ops = install_operations(app, metrics_port, metrics_host)
    except OSError as exc:
        raise fail(f"cannot serve metrics on {metrics_host}:{metrics_port}: {exc.strerror or exc}", 2) from None
    worker = Worker(app, WorkerOptions(group=group, queues=list(queue), route_only=True))
    worker.install_signal_handlers()
    console.print(f"routing delay tiers {', '.join(app.tiers.names)} of {', '.join(queue)} as group {group}",
                  highlight=False)
    try:
        stats = worker.run()
    finally:
        ops.close()
    console.print(f"stopped: {stats.delivered} delivered, {stats.re_tiered} moved to a shorter tier",
                  highlight=False)
