"""The poll loop: fetch, decode, hand out, settle, commit. It never waits on a handler."""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, Message, TopicPartition

from kqueue.core.headers import now_ms
from kqueue.core.topology import tier_topics, worker_topics
from kqueue.sdk.app import App
from kqueue.transport.config import consumer_config
from kqueue.transport.settle import AtLeastOnceSettler, Settler, TransactionAborted, TransactionalSettler
from kqueue.worker.checkpoint import TP, Checkpoint, SettleCounts
from kqueue.worker.decode import Decoder
from kqueue.worker.executor import Executor
from kqueue.worker.router import DelayRouter
from kqueue.worker.routing import route_due, route_failure
from kqueue.worker.work import Outcome, WorkItem

log = logging.getLogger("kqueue.worker")
MAX_ABORTS_IN_A_ROW = 3


@dataclass
class WorkerOptions:
    group: str
    queues: list[str] = field(default_factory=list)  # empty: every queue the app has tasks for
    concurrency: int = 8
    batch_size: int = 500
    grace: float = 30.0
    commit_interval: float = 0.5
    poll_timeout: float = 0.1
    max_inflight: int | None = None  # pause fetching above this many unsettled tasks
    transactions: bool = True  # settle each batch in one Kafka transaction (exactly-once routing)
    route_delays: bool = True  # run the delay router for the queues' tiers
    route_only: bool = False  # `kqueue router`: move due tier records, run no handlers
    consumer_overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class WorkerStats(SettleCounts):
    polled: int = 0
    assigned: int = 0  # partitions assigned over the run (rebalance events show here)
    revoked: int = 0


class Worker:
    def __init__(self, app: App, options: WorkerOptions) -> None:
        self.app = app
        self.options = options
        self.queues = options.queues or app.queues()
        if not self.queues:
            raise ValueError("the app has no tasks, so there is nothing to consume")
        if options.route_only and not options.route_delays:
            raise ValueError("route_only needs route_delays")
        self._stopping = False
        self._report_state = False
        self._aborts_in_a_row = 0
        self._drain_deadline: float | None = None
        self._paused: set[TP] = set()
        self._inflight = 0
        self.stats = WorkerStats()

    # -- lifecycle -----------------------------------------------------------------------------------
    def request_stop(self, *_: object) -> None:
        self._stopping = True

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        signal.signal(signal.SIGUSR1, self._request_state_report)

    def _request_state_report(self, *_: object) -> None:
        self._report_state = True

    def state(self) -> dict[str, Any]:
        """What the worker holds right now (SIGUSR1 logs it): for operators chasing a stuck queue."""
        return {
            "inflight": self._inflight,
            "paused": len(self._paused),
            "assigned": len(self._consumer.assignment()),
            "executor": self._executor.state(),
            "router_waiting": len(self._router.waiting),
            "outstanding": self._checkpoint.outstanding(),
            "counts": self._checkpoint.counts,
        }

    def run(self, until: Callable[[Worker], bool] | None = None) -> WorkerStats:
        """Consume until stopped (signal, `request_stop`, or `until(worker)` returning True)."""
        opts, app = self.options, self.app
        for queue in self.queues:
            app.ensure_queue(queue)
        config = consumer_config(app.bootstrap_servers, opts.group, **opts.consumer_overrides)
        # Cooperative-sticky and KIP-848 hand out partitions incrementally; an eager strategy does not.
        self._incremental = ("cooperative" in str(config.get("partition.assignment.strategy", ""))
                             or config.get("group.protocol") == "consumer")
        self._consumer = Consumer(config)
        self._settler: Settler = (
            TransactionalSettler(self._consumer, app.bootstrap_servers, opts.group) if opts.transactions
            else AtLeastOnceSettler(self._consumer, app.bootstrap_servers)
        )
        self._checkpoint = Checkpoint(self._settler, opts.commit_interval)
        self._executor = Executor(opts.concurrency)
        self._decoder = Decoder(app)
        self._router = DelayRouter(self._consumer, app.tiers, app.topic_prefix)
        topics = [] if opts.route_only else [t for q in self.queues for t in worker_topics(q, app.topic_prefix)]
        if opts.route_delays or opts.route_only:
            topics += [t for q in self.queues for t in tier_topics(q, app.tiers.names, app.topic_prefix)]
        self._consumer.subscribe(topics, on_assign=self._on_assign, on_revoke=self._on_revoke,
                                 on_lost=self._on_lost)
        try:
            while not self._stopping and not (until is not None and until(self)):
                self._step()
            self._drain_and_commit()
            if self._checkpoint.failed is not None:
                raise self._checkpoint.failed
        finally:
            self._consumer.close()  # leaves the group; the revoke callback commits what is settled
            self._settler.close()
            self._executor.stop()
        return self._stats()

    def _stats(self) -> WorkerStats:
        counts = self._checkpoint.counts
        self.stats = WorkerStats(counts.completed, counts.retried, counts.dead_lettered, counts.delivered,
                                 counts.re_tiered, self.stats.polled, self.stats.assigned, self.stats.revoked)
        return self.stats

    @property
    def counts(self) -> SettleCounts:
        """What has been settled so far (live, for progress displays and tests)."""
        checkpoint = getattr(self, "_checkpoint", None)
        return checkpoint.counts if checkpoint is not None else SettleCounts()

    # -- one turn of the loop ------------------------------------------------------------------------
    def _step(self) -> None:
        messages = self._consumer.consume(self.options.batch_size, timeout=self.options.poll_timeout)
        if messages:
            self._hand_out(messages)
        self._router.resume_due()
        self._settle()
        if self._report_state:
            self._report_state = False
            log.warning("worker state: %s", self.state())
        self._apply_backpressure()
        if self._checkpoint.due():
            self._commit()

    def _commit(self, keep: set[TP] | None = None) -> None:
        """Commit what is settled; after a clean transaction abort, rewind instead of failing."""
        try:
            if self._checkpoint.commit():
                self._aborts_in_a_row = 0  # progress: offsets moved
        except TransactionAborted as exc:
            self._aborts_in_a_row += 1
            if self._aborts_in_a_row >= MAX_ABORTS_IN_A_ROW:
                # Not a passing rebalance: the same batch fails every time (e.g. a record too large
                # for its topic). Stop, so the failure is seen instead of looping silently.
                self._checkpoint.failed = exc
                raise
            log.warning("%s; rewinding to the committed offsets", exc)
            self._rewind(set(self._checkpoint.watermarks) if keep is None else keep)

    def _rewind(self, partitions: set[TP]) -> None:
        """Start `partitions` over from their committed offsets: queued work is dropped, late outcomes
        of running work are ignored (new watermarks), and the records are fetched again."""
        self._inflight -= self._executor.drop(lambda item: (item.topic, item.partition) in partitions)
        self._router.forget(partitions)
        if not partitions:
            return
        committed = self._consumer.committed([TopicPartition(t, p) for t, p in partitions], timeout=10)
        for tp in committed:
            if tp.offset < 0:  # nothing committed yet: back to the start, as auto.offset.reset would
                tp.offset = self._consumer.get_watermark_offsets(tp, timeout=10)[0]
            self._consumer.seek(tp)
        self._checkpoint.restart({(tp.topic, tp.partition): tp.offset for tp in committed})

    def _hand_out(self, messages: list[Message]) -> None:
        tasks: list[Message] = []
        tier_records: list[Message] = []
        for msg in messages:
            if msg.error() is not None:
                log.warning("consumer error: %s", msg.error())
            elif self._router.is_tier_topic(msg.topic()):  # type: ignore[arg-type]
                tier_records.append(msg)
            else:
                tasks.append(msg)
        self.stats.polled += len(tasks)
        if tier_records:
            self._route_tier_records(tier_records)
        runnable: list[WorkItem] = []
        now = now_ms()
        for item, failure in self._decoder.decode_batch(tasks):
            # Track in offset order (before anything can settle), then split by what to do.
            if not self._checkpoint.track(item):
                continue  # partition no longer ours
            if failure is None:
                runnable.append(item)
            else:
                self._checkpoint.route(item, route_failure(item, failure, self.app.tiers, self.app.topic_prefix, now))
        self._inflight += len(runnable)
        self._executor.submit(runnable)

    def _route_tier_records(self, messages: list[Message]) -> None:
        now = now_ms()
        for item in self._router.due_items(messages, now):
            if self._checkpoint.track(item):
                self._checkpoint.route(item, [route_due(item, self.app.tiers, self.app.topic_prefix, now)])

    def _settle(self) -> None:
        outcomes: list[Outcome] = self._executor.drain()
        if not outcomes:
            return
        self._inflight -= len(outcomes)
        now = now_ms()
        done = []
        for item, failure in outcomes:
            if failure is None:
                done.append(item)
            else:
                self._checkpoint.route(item, route_failure(item, failure, self.app.tiers, self.app.topic_prefix, now))
        self._checkpoint.completed(done)

    def _max_inflight(self) -> int:
        return self.options.max_inflight or max(self.options.batch_size * 4, self.options.concurrency * 4)

    def _apply_backpressure(self) -> None:
        """Pause every task partition while too much is unsettled; the loop keeps polling.

        Tier partitions are left to the router: moving due records costs no handler time."""
        limit = self._max_inflight()
        if self._inflight >= limit:
            assignment = {(tp.topic, tp.partition) for tp in self._consumer.assignment()
                          if not self._router.is_tier_topic(tp.topic)}
            newly = assignment - self._paused
            if newly:
                self._consumer.pause([TopicPartition(t, p) for t, p in newly])
                self._paused |= newly
        elif self._paused and self._inflight <= limit // 2:
            self._consumer.resume([TopicPartition(t, p) for t, p in self._paused])
            self._paused.clear()

    # -- shutdown ------------------------------------------------------------------------------------
    def _drain_and_commit(self) -> None:
        """Stop fetching, let in-flight tasks finish within the grace, settle, commit."""
        assignment = self._consumer.assignment()
        if assignment:
            self._consumer.pause(assignment)
        # Everything fetched gets the grace to finish: dropping queued work would leave a gap below
        # completed offsets, and those would run again after the restart.
        deadline = self._drain_deadline = time.monotonic() + self.options.grace
        while self._inflight > 0 and time.monotonic() < deadline:
            self._consumer.consume(1, timeout=0.05)  # keeps membership; partitions are paused
            self._settle()
        self._settle()
        # Past the grace: not started, left uncommitted, so whoever owns the partition next runs them.
        self._inflight -= self._executor.drop(lambda _item: True)
        self._commit()

    # -- rebalance -----------------------------------------------------------------------------------
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._checkpoint.assign((tp.topic, tp.partition) for tp in partitions)
        if partitions:
            # librdkafka keeps a partition's pause flag across revoke and re-assign: one we paused
            # (backpressure, or the router holding a tier) and lost would come back paused forever.
            if self._incremental:
                consumer.incremental_assign(partitions)
            else:
                consumer.assign(partitions)
            consumer.resume(partitions)
        self.stats.assigned += len(partitions)
        log.info("assigned %s", [f"{tp.topic}/{tp.partition}" for tp in partitions])

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        lost = {(tp.topic, tp.partition) for tp in partitions}
        self.stats.revoked += len(partitions)

        def doomed(item: WorkItem) -> bool:
            return (item.topic, item.partition) in lost

        # Finish what was fetched for these partitions within the grace (fewer re-runs for the new
        # owner); what is left is dropped uncommitted and redelivered there. When leaving, the drain
        # already spent the grace.
        deadline = self._drain_deadline or time.monotonic() + self.options.grace
        while self._executor.pending(doomed) and time.monotonic() < deadline:
            time.sleep(0.005)
            self._settle()
            if self._checkpoint.due():
                self._commit(keep=set(self._checkpoint.watermarks) - lost)  # keep transactions short
        self._inflight -= self._executor.drop(doomed)
        self._settle()
        self._commit(keep=set(self._checkpoint.watermarks) - lost)
        self._forget(lost)
        log.info("revoked %s", [f"{tp.topic}/{tp.partition}" for tp in partitions])

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Ownership is already gone: commit nothing for these, just forget them. Records already
        # routed for them in the open transaction would commit without their offsets (and be written
        # again by the new owner), so with transactions the worker stops and starts over instead.
        lost = {(tp.topic, tp.partition) for tp in partitions}
        if self._settler.transactional and self._checkpoint.failed is None:
            self._checkpoint.failed = RuntimeError(f"lost {len(lost)} partition(s) with a batch in flight; restarting")
            self._stopping = True
        self._inflight -= self._executor.drop(lambda item: (item.topic, item.partition) in lost)
        self._forget(lost)

    def _forget(self, lost: set[TP]) -> None:
        self._checkpoint.revoke(lost)
        self._router.forget(lost)
        self._paused -= lost
