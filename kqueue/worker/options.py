"""How a worker is configured, what it counts, and how it reaches Kafka."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kqueue.core.priority import DEFAULT_WEIGHTS, LaneWeights
from kqueue.sdk.app import App
from kqueue.transport.consumer import ConsumerEdge, KafkaConsumerEdge
from kqueue.transport.settle import AtLeastOnceSettler, Settler, TransactionalSettler
from kqueue.worker.checkpoint import COMMIT_INTERVAL, SettleCounts


@dataclass
class WorkerOptions:
    group: str
    queues: list[str] = field(default_factory=list)  # empty: every queue the app has tasks for
    concurrency: int = 8
    batch_size: int = 500
    grace: float = 30.0
    commit_interval: float = COMMIT_INTERVAL  # seconds between commits: a crash re-runs what completed since
    poll_timeout: float = 0.1
    max_inflight: int | None = None  # pause fetching above this many unsettled tasks
    transactions: bool = True  # settle each batch in one Kafka transaction (exactly-once routing)
    route_delays: bool = True  # run the delay router for the queues' tiers
    route_only: bool = False  # `kqueue router`: move due tier records, run no handlers
    group_protocol: str = "consumer"  # KIP-848 with the broker's range assignor; "classic" for old brokers
    # Sync handler threads allowed to run on past their time limit (None: `concurrency`); beyond it
    # the worker drains and stops with `recycle_reason` set, so its process is restarted.
    max_overrun_threads: int | None = None
    # Static membership (group.instance.id): a restarted worker with the same id takes its partitions
    # back at once, without a rebalance of the others. Unique per live worker.
    instance_id: str | None = None
    # Report the tasks running here about once a second to _kqueue.workers (the status view's
    # `processing`, the dashboard's workers).
    status_reports: bool = True
    consumer_overrides: dict[str, Any] = field(default_factory=dict)
    # How handlers are shared among the priority lanes while several have work (core/priority.py).
    weights: LaneWeights = DEFAULT_WEIGHTS


def parse_commit_interval(text: str) -> float:
    """`--commit-interval`'s value: seconds, a positive finite number; ValueError (one line) otherwise."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"--commit-interval must be a positive number of seconds (e.g. 0.1), not {text!r}")
    return seconds


@dataclass
class WorkerStats(SettleCounts):
    polled: int = 0
    assigned: int = 0  # partitions assigned over the run (rebalance events show here)
    revoked: int = 0
    lost: int = 0
    skipped: int = 0  # tasks a previous owner had completed above its commit, not run again


# How a worker reaches Kafka: a consumer edge and a settler over it (tests pass a scripted one).
Transport = Callable[[App, WorkerOptions, list[str]], tuple[ConsumerEdge, Settler]]


def kafka_transport(app: App, options: WorkerOptions, queues: list[str]) -> tuple[ConsumerEdge, Settler]:
    for queue in queues:
        app.ensure_queue(queue)
    overrides = dict(options.consumer_overrides)
    if options.instance_id:
        overrides["group.instance.id"] = options.instance_id
    edge = KafkaConsumerEdge(app.bootstrap_servers, options.group, options.group_protocol, **overrides)
    settler: Settler = (TransactionalSettler(app.bootstrap_servers, options.group, instance_id=options.instance_id)
                        if options.transactions
                        else AtLeastOnceSettler(edge, app.bootstrap_servers))
    return edge, settler
