"""Put the operations middleware on an app for `kqueue consume`: lifecycle logs and the summary
line always (as the log level allows); metrics, lag and health when a port is served (or a
supervisor collects them from its children)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from kqueue.observe.health import LIVENESS_TIMEOUT, HealthMiddleware
from kqueue.observe.lag import LagProbe
from kqueue.observe.logs import LEVEL_OF, TASK_LOGGER, lifecycle_log
from kqueue.observe.metrics import MetricsMiddleware
from kqueue.observe.server import OperationsServer
from kqueue.observe.summary import SUMMARY_EVERY, SUMMARY_LOGGER, SummaryLog, lane_lag
from kqueue.sdk.app import App
from kqueue.sdk.middleware import Middleware

# Set by the --processes supervisor for its children: where their metrics and beats go.
CHILD_DIR_ENV = "KQUEUE_METRICS_DIR"
METRICS_PORT_ENV = "KQUEUE_METRICS_PORT"


@dataclass
class Operations:
    metrics: MetricsMiddleware | None = None
    lag: LagProbe | None = None
    health: HealthMiddleware | None = None
    server: OperationsServer | None = None
    summary: SummaryLog | None = None
    middleware: list[Middleware] = field(default_factory=list)

    def close(self) -> None:
        if self.summary is not None:
            self.summary.flush()  # what was settled since the last line
        if self.metrics is not None:
            self.metrics.flush()  # the settlements since the last tick
        if self.lag is not None:
            self.lag.stop()
        if self.server is not None:
            self.server.stop()


def child_dir() -> Path | None:
    value = os.environ.get(CHILD_DIR_ENV)
    return Path(value) if value else None


def beat_path(directory: Path, pid: int) -> Path:
    return directory / f"beat-{pid}.json"


def install_operations(app: App, metrics_port: int | None, host: str = "0.0.0.0",
                       liveness_timeout: float = LIVENESS_TIMEOUT, summary_every: float = SUMMARY_EVERY) -> Operations:
    """Add the middleware to `app` and start the port if one is asked for (port 0: any free port).
    `summary_every`: seconds between summary lines (0: none)."""
    ops = Operations()
    if logging.getLogger(TASK_LOGGER).isEnabledFor(max(LEVEL_OF.values())):  # at ERROR it would write nothing
        ops.middleware.append(lifecycle_log())
    shared = child_dir()
    if shared is not None:
        # A child that restarted itself (execv) keeps its pid: its old live gauges (lag, partitions
        # owned) would otherwise stay in the files beside the new ones. Counters are kept.
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(os.getpid(), str(shared))  # type: ignore[no-untyped-call]
    if metrics_port is not None or shared is not None:
        ops.metrics = MetricsMiddleware(app)
        ops.lag = LagProbe(app.bootstrap_servers, app.topic_prefix, ops.metrics.metrics)
        lag = ops.lag
        beat_file = beat_path(shared, os.getpid()) if shared is not None else None
        ops.health = HealthMiddleware(lambda: lag.answered_at, beat_file, liveness_timeout)
        ops.middleware += [ops.metrics, ops.lag, ops.health]
        if metrics_port is not None:
            ops.server = OperationsServer(ops.metrics.registry, ops.health, metrics_port, host).start()
    if summary_every > 0 and logging.getLogger(SUMMARY_LOGGER).isEnabledFor(logging.INFO):
        ops.summary = SummaryLog(summary_every, _lane_lag_of(ops.lag) if ops.lag is not None else None)
        ops.middleware.append(ops.summary)
    for middleware in ops.middleware:
        app.add_middleware(middleware)
    return ops


def _lane_lag_of(probe: LagProbe) -> Callable[[], int | None]:
    """The task lanes' lag as the probe last read it; None until it has answered once."""
    return lambda: lane_lag(probe.last) if probe.answered_at is not None else None
