"""Prometheus metrics as a middleware: settlements, run time, latency, utilization, commits, lag.

Labels stay low-cardinality: `queue` and `task` are only ever the app's own queues and task types
(a foreign record of an unknown type counts as task="unknown"), `outcome` a fixed set. Label
children are cached per (queue, task) so a settled task costs a few dict lookups and observations.
With `--processes N` the values live in prometheus-client's multiprocess files (PROMETHEUS_MULTIPROC_DIR),
and each gauge says how the supervisor's one scrape combines the children.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from kqueue.core.headers import enqueued_at_ms
from kqueue.core.names import queue_of_topic, tier_of_topic
from kqueue.core.records import Settlement
from kqueue.sdk.app import App
from kqueue.sdk.middleware import CommitEvent, Middleware, PartitionEvent, SettleEvent, TickEvent
from kqueue.worker.events import Completions
from kqueue.worker.work import WorkItem

UNKNOWN_TASK = "unknown"
MAX_REMEMBERED_TYPES = 1000
RUN_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
LATENCY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0, 21600.0)
# The same bounds in whole milliseconds, for tallying completions (an integer difference, no float).
LATENCY_BUCKETS_MS = tuple(round(bound * 1000) for bound in LATENCY_BUCKETS)
COMMIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Outcome label values (Prometheus style: snake case) of each settlement.
OUTCOME_LABEL = {s: s.value.replace("-", "_") for s in Settlement}
_MOVES = frozenset({Settlement.DELIVERED, Settlement.RE_TIERED})
_RETRIED = Settlement.RETRIED


class WorkerMetrics:
    """Every kqueue metric, registered in one registry (one per worker: tests run several)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.tasks = Counter("kqueue_tasks", "Tasks settled, by outcome (completed, retried, dead_lettered)",
                             ["queue", "task", "outcome"], registry=r)
        self.retries = Counter("kqueue_retries", "Failed attempts sent to a delay tier", ["queue", "task", "tier"],
                               registry=r)
        self.dead_letters = Counter("kqueue_dead_letters", "Tasks written to their queue's DLQ", ["queue", "task"],
                                    registry=r)
        self.delay_moves = Counter("kqueue_delay_moves", "Delay-tier records moved on (delivered or re_tiered)",
                                   ["queue", "tier", "outcome"], registry=r)
        self.run_seconds = Histogram("kqueue_task_run_seconds", "Handler run time per attempt", ["queue", "task"],
                                     buckets=RUN_BUCKETS, registry=r)
        self.latency = Histogram("kqueue_task_latency_seconds",
                                 "From first enqueue to the final outcome (completed or dead_lettered)",
                                 ["queue", "task", "outcome"], buckets=LATENCY_BUCKETS, registry=r)
        self.commit_seconds = Histogram("kqueue_commit_seconds", "Commit (transaction) latency",
                                        buckets=COMMIT_BUCKETS, registry=r)
        self.commit_failing = Gauge("kqueue_commit_failing_seconds", "Seconds commits have been failing (0: fine)",
                                    registry=r, multiprocess_mode="livemax")
        self.rebalances = Counter("kqueue_rebalance_events", "Partitions assigned, revoked or lost",
                                  ["kind"], registry=r)
        self.partitions = Gauge("kqueue_partitions_owned", "Partitions owned now (task lanes and delay tiers)",
                                ["queue"], registry=r, multiprocess_mode="livesum")
        self.in_flight = Gauge("kqueue_tasks_in_flight", "Tasks fetched and not settled yet",
                               registry=r, multiprocess_mode="livesum")
        self.busy = Gauge("kqueue_worker_busy_slots", "Handler slots working now", registry=r,
                          multiprocess_mode="livesum")
        self.concurrency = Gauge("kqueue_worker_concurrency", "Handler slots", registry=r,
                                 multiprocess_mode="livesum")
        self.utilization = Gauge("kqueue_worker_utilization", "Busy slots / concurrency (sampled each second)",
                                 registry=r, multiprocess_mode="liveall")
        self.lag = Gauge("kqueue_queue_lag", "Records not yet committed by the group, on this worker's partitions",
                         ["queue", "lane", "tier", "group"], registry=r, multiprocess_mode="livesum")


class Tally:
    """Settlements of one (queue, task, outcome) since the last flush: counted in plain Python on the
    poll loop, handed to prometheus-client once a second (a histogram observation costs a lock and a
    bucket scan; a no-op task costs about 15 us in all, so per-task observations would be felt)."""

    __slots__ = ("count", "latency_buckets", "latency_ms", "outcome", "queue", "run_buckets", "run_sum", "task")

    def __init__(self, queue: str, task: str, outcome: Settlement) -> None:
        self.queue, self.task, self.outcome = queue, task, outcome
        self.reset()

    def reset(self) -> None:
        self.count = 0
        self.run_sum = 0.0
        self.run_buckets = [0] * (len(RUN_BUCKETS) + 1)
        self.latency_ms = 0  # whole milliseconds: exact, whatever the order they are added in
        self.latency_buckets = [0] * (len(LATENCY_BUCKETS) + 1)


def add_observations(histogram: Any, buckets: list[int], total: float) -> None:
    """Observations already sorted into `buckets` (non-cumulative, +Inf last), added in one go.
    prometheus-client has no public bulk observe; this does what `Histogram.observe` does per
    observation to the same child (its `_sum` and per-bucket values), and a unit test holds it to
    the exposition `observe` gives."""
    histogram._sum.inc(total)
    for index, count in enumerate(buckets):
        if count:
            histogram._buckets[index].inc(count)


class MetricsMiddleware(Middleware):
    """Feeds `WorkerMetrics` from the seam's hooks; lag comes from a `LagProbe` (observe/lag.py).
    Settlements are tallied per task and flushed each tick (and by `flush()` at the end)."""

    def __init__(self, app: App, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = WorkerMetrics(self.registry)
        self._prefix = app.topic_prefix
        self._known = {(queue, name) for queue, name in app.tasks}
        # By the event's own (queue, task type, outcome); types the app does not know share "unknown".
        self._tallies: dict[tuple[str, str | None, Settlement], Tally] = {}
        self._unique: dict[tuple[str, str, Settlement], Tally] = {}
        self._completed: dict[tuple[str, str | None], Tally] = {}  # the same tallies, for completions
        self._retries: dict[tuple[str, str, str], int] = {}
        self._moves: dict[tuple[str, str, str], int] = {}
        self._owned_queues: set[str] = set()

    def on_settle(self, event: SettleEvent) -> None:
        self.on_settle_many((event,))

    def on_settle_many(self, events: Sequence[SettleEvent]) -> None:
        if type(events) is Completions:
            self._tally_completions(events.items, events.settled_at_ms)
            return
        tallies, run_bounds, latency_bounds = self._tallies, RUN_BUCKETS, LATENCY_BUCKETS_MS
        for event in events:
            outcome = event.outcome
            if outcome in _MOVES:
                key3 = (event.queue, tier_of_topic(event.topic) or "", OUTCOME_LABEL[outcome])
                self._moves[key3] = self._moves.get(key3, 0) + 1
                continue
            tally = tallies.get((event.queue, event.task_type, outcome))
            if tally is None:
                tally = self._tally(event.queue, event.task_type, outcome)
            tally.count += 1
            run = event.run_seconds
            if run is not None:
                tally.run_sum += run
                tally.run_buckets[bisect_left(run_bounds, run)] += 1
            if outcome is _RETRIED:
                key3 = (event.queue, tally.task, event.tier or "")
                self._retries[key3] = self._retries.get(key3, 0) + 1
                continue
            enqueued = event.enqueued_at_ms  # a final outcome: completed or dead-lettered
            if enqueued is not None:
                millis = event.settled_at_ms - enqueued
                if millis < 0:  # clocks of two hosts
                    millis = 0
                tally.latency_ms += millis
                tally.latency_buckets[bisect_left(latency_bounds, millis)] += 1

    def _tally_completions(self, items: list[WorkItem], settled_at_ms: int) -> None:
        """The common case, straight from the worker's items: no event objects, lookups in locals
        (a no-op task costs under 10 us in all, and the budget of every operations hook together is
        a tenth of that). A batch's items mostly share a task, so its tally is looked up per change."""
        run_bounds, latency_bounds = RUN_BUCKETS, LATENCY_BUCKETS_MS
        last_task: object = None
        tally: Tally | None = None
        for item in items:
            task = item.task
            if task is not last_task or task is None:
                tally = self._completed_tally(item)
                last_task = task
            assert tally is not None
            tally.count += 1
            run = item.run_seconds
            if run is not None:
                tally.run_sum += run
                tally.run_buckets[bisect_left(run_bounds, run)] += 1
            enqueued = item.enqueued_at_ms or enqueued_at_ms(item.raw_headers)  # read while decoding
            if enqueued and enqueued > 0:
                millis = settled_at_ms - enqueued
                if millis < 0:  # clocks of two hosts
                    millis = 0
                tally.latency_ms += millis
                tally.latency_buckets[bisect_left(latency_bounds, millis)] += 1

    def _completed_tally(self, item: WorkItem) -> Tally:
        task = item.task
        task_type = task.name if task is not None else item.meta.task_type
        tally = self._completed.get((item.queue, task_type))
        if tally is None:
            tally = self._tally(item.queue, task_type, Settlement.COMPLETED)
            if task is not None:  # the app's own types only: bounded
                self._completed[(item.queue, task_type)] = tally
        return tally

    def _tally(self, queue: str, task_type: str | None, outcome: Settlement) -> Tally:
        task = task_type if task_type is not None and (queue, task_type) in self._known else UNKNOWN_TASK
        tally = self._unique.get((queue, task, outcome))
        if tally is None:
            tally = self._unique[(queue, task, outcome)] = Tally(queue, task, outcome)
        if task != UNKNOWN_TASK or len(self._tallies) < MAX_REMEMBERED_TYPES:  # foreign types: bounded memory
            self._tallies[(queue, task_type, outcome)] = tally
        return tally

    def flush(self) -> None:
        """Hand the tallies to prometheus-client (on the poll loop: no lock needed for the tallies)."""
        m = self.metrics
        for tally in self._unique.values():
            if not tally.count:
                continue
            queue, outcome = tally.queue, tally.outcome
            label = OUTCOME_LABEL[outcome]
            m.tasks.labels(queue, tally.task, label).inc(tally.count)
            if outcome is Settlement.DEAD_LETTERED:
                m.dead_letters.labels(queue, tally.task).inc(tally.count)
            if tally.run_sum or any(tally.run_buckets):
                add_observations(m.run_seconds.labels(queue, tally.task), tally.run_buckets, tally.run_sum)
            if any(tally.latency_buckets):
                add_observations(m.latency.labels(queue, tally.task, label), tally.latency_buckets,
                                 tally.latency_ms / 1000)
            tally.reset()
        for (queue, task, tier), count in self._retries.items():
            m.retries.labels(queue, task, tier).inc(count)
        for (queue, tier, outcome_label), count in self._moves.items():
            m.delay_moves.labels(queue, tier, outcome_label).inc(count)
        self._retries.clear()
        self._moves.clear()

    def on_commit(self, event: CommitEvent) -> None:
        self.metrics.commit_seconds.observe(event.seconds)

    def on_partitions(self, event: PartitionEvent) -> None:
        self.metrics.rebalances.labels(event.kind).inc(len(event.partitions))

    def on_tick(self, event: TickEvent) -> None:
        self.flush()
        m = self.metrics
        m.busy.set(event.busy)
        m.concurrency.set(event.concurrency)
        m.utilization.set(event.busy / event.concurrency if event.concurrency else 0.0)
        m.in_flight.set(event.unsettled)
        m.commit_failing.set(event.commits_failing_for)
        owned: dict[str, int] = {}
        for topic, _ in event.partitions:
            queue = queue_of_topic(topic, self._prefix)
            owned[queue] = owned.get(queue, 0) + 1
        for queue in self._owned_queues - owned.keys():
            m.partitions.labels(queue).set(0)
        for queue, count in owned.items():
            m.partitions.labels(queue).set(count)
        self._owned_queues = set(owned)
