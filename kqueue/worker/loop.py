"""The poll loop: fetch, decode, hand out, settle, commit. It never waits on a handler."""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from collections.abc import Callable, Iterable
from typing import Any

from kqueue.core.completed import decode as decode_completed
from kqueue.core.control import QueuePauses
from kqueue.core.dedup import Claim
from kqueue.core.headers import now_ms
from kqueue.core.names import control_topic, workers_topic
from kqueue.core.priority import lane_ranks, partition_rank
from kqueue.core.records import TP
from kqueue.core.topology import tier_topics, worker_topics
from kqueue.sdk.app import App
from kqueue.sdk.middleware import CommitEvent, PartitionEvent, TickEvent
from kqueue.transport.consumer import Record
from kqueue.transport.settle import BatchNotCommitted
from kqueue.worker import committer
from kqueue.worker.bounds import Bounds, inflight_limit
from kqueue.worker.cancels import CancelWatch
from kqueue.worker.checkpoint import Checkpoint, CommitResult, SettleCounts
from kqueue.worker.commit_health import CommitHealth
from kqueue.worker.committer import BackgroundCommitter
from kqueue.worker.decode import Decoder
from kqueue.worker.dedup_gate import ClaimLoader, DedupGate, kafka_claim_loader
from kqueue.worker.executor import Executor
from kqueue.worker.lane_holds import LaneHolds
from kqueue.worker.options import Transport, WorkerOptions, WorkerStats, kafka_transport
from kqueue.worker.ordering import OrderedKeys
from kqueue.worker.outcomes import Outcomes
from kqueue.worker.partition_table import PartitionTable
from kqueue.worker.partitions import PauseReason
from kqueue.worker.pausing import QueuePausing
from kqueue.worker.ratelimits import RateHolds, RateLimits, unsettled_beyond_waits
from kqueue.worker.reporter import ReportSender
from kqueue.worker.router import DelayRouter, is_tier_topic
from kqueue.worker.runner import Runner


def _no_claims(topic: str, partition: int) -> dict[str, Claim]:
    return {}


__all__ = ["Transport", "Worker", "WorkerOptions", "WorkerStats", "kafka_transport"]

log = logging.getLogger("kqueue.worker")
# Commits given up while stuck in the client (each leaves a blocked thread) before the process restarts.
MAX_ABANDONED_COMMITS = 5
TICK_EVERY = 1.0  # seconds between on_tick hooks
# The longest a turn waits for records while tasks are in flight: a finished task does not wake the
# poll, and its completion should not wait out the whole poll timeout to be settled and committed.
SETTLE_WAIT = 0.01


def _summary(partitions: list[TP]) -> str:
    return f"{len(partitions)} partition(s) of {len({t for t, _ in partitions})} topic(s)"


class Worker:
    def __init__(self, app: App, options: WorkerOptions, transport: Transport | None = None,
                 claim_loader: ClaimLoader | None = None) -> None:  # tests pass scripted ones
        self.app = app
        self._claim_loader = claim_loader
        self.options = options
        self.queues = options.queues or app.queues()
        if not self.queues:
            raise ValueError("the app has no tasks, so there is nothing to consume")
        if options.route_only and not options.route_delays:
            raise ValueError("route_only needs route_delays")
        self._transport = transport or kafka_transport
        self._hooks = app.hooks
        self._stopping = False
        self._report_state = False
        self._health = CommitHealth()
        self._drain_deadline: float | None = None
        # Set when the worker stopped itself so that its process restarts (threads it cannot reclaim).
        self.recycle_reason: str | None = None
        self._tier_topic: dict[str, bool] = {}
        self._next_tick = 0.0
        self.worker_id = options.instance_id or f"{socket.gethostname()}:{os.getpid()}"
        self.stats = WorkerStats()
        # The paused queues: read from _kqueue.control by the control watch (tests may set them).
        self.pauses = QueuePauses()

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
        if not hasattr(self, "_executor"):
            return {"unsettled": 0, "held_for_commit": 0, "assigned": 0, "started": False}
        table = self._table
        return {
            "unsettled": table.unsettled(),
            "held_for_commit": table.held(),
            "assigned": len(table.states),
            "paused": {f"{t}/{p}": s.describe() for (t, p), s in table.states.items() if s.pauses},
            "paused_queues": sorted(self._pausing.paused),
            "router_holds": {f"{t}/{p}": due for (t, p), due in table.holds().items()},
            "executor": self._executor.state(),
            "rate_limits": self._rates.describe() if self._rates is not None else {},
            "counts": self._checkpoint.counts,
            "commits_failing_for": round(self._health.failing_for(), 1),
        }

    def run(self, until: Callable[[Worker], bool] | None = None) -> WorkerStats:
        """Consume until stopped (signal, `request_stop`, or `until(worker)` returning True)."""
        if self._stopping:  # asked to stop during start-up: nothing was fetched, nothing to do
            return self.stats
        opts, app = self.options, self.app
        self._edge, settler = self._transport(app, opts, self.queues)
        self._table = PartitionTable(self._edge, self._is_tier, app.topic_prefix)
        self._checkpoint = Checkpoint(self._table, settler, opts.commit_interval)
        self._committer = BackgroundCommitter(settler, abandon_after=committer.ABANDON_AFTER)
        # At least once, the offsets go through the consumer, which serves one thread at a time (a
        # commit from another thread waits while this one polls): such commits stay on this thread.
        self._background_commits = settler.transactional
        self._cancels = (CancelWatch(app.bootstrap_servers, control_topic(app.topic_prefix), pauses=self.pauses).start()
                         if self._transport is kafka_transport and not opts.route_only else None)
        live_kafka = self._transport is kafka_transport and not opts.route_only
        self._reporter = (ReportSender(app.bootstrap_servers, workers_topic(app.topic_prefix))
                          if live_kafka and opts.status_reports else None)
        self._runner = Runner(self._hooks, self._cancels.pending if self._cancels is not None else None,
                              track_running=self._reporter is not None)
        ranks = lane_ranks(self.queues, app.topic_prefix)
        self._rates = RateLimits.of(app, self.queues, kafka=live_kafka, queue_limits=self.pauses.limits)
        ordered = OrderedKeys.wanted(app, self.queues)
        self._executor = Executor(opts.concurrency, self._runner, opts.weights, partition_rank(ranks),
                                  self._rates.limits_of if self._rates is not None else None,
                                  OrderedKeys.holds_after if ordered else None)
        lanes = LaneHolds(self._table, opts.weights, ranks, self._executor.ready_by_rank, self._edge.cached_lag)
        self._pausing = QueuePausing(self._table, self._executor, self.pauses, self.queues)
        rate_holds = RateHolds(self._table, self._executor) if self._rates is not None else None
        self._bounds = Bounds(self._table, inflight_limit(opts.max_inflight, opts.batch_size, opts.concurrency),
                              opts.concurrency, lambda: self._executor.seconds_per_item, lanes, rate_holds)
        self._decoder = Decoder(app, read_enqueued_at=bool(self._hooks.settle))
        # Claims come from Q.dedup; a scripted transport (state-machine tests) starts with none.
        loader = self._claim_loader or (kafka_claim_loader(app.bootstrap_servers) if live_kafka else _no_claims)
        self._gate = DedupGate(app.topic_prefix, loader)
        self._outcomes = Outcomes(app, self._table, self._checkpoint, self._gate, self._hooks, self.worker_id,
                                  self._cancels.pending if self._cancels is not None else None,
                                  OrderedKeys.of(app, self._executor, live_kafka) if ordered else None)
        self._router = DelayRouter(self._table, app.tiers, app.topic_prefix)
        topics = [] if opts.route_only else [t for q in self.queues for t in worker_topics(q, app.topic_prefix)]
        if opts.route_delays or opts.route_only:
            topics += [t for q in self.queues for t in tier_topics(q, app.tiers.names, app.topic_prefix)]
        try:
            self._edge.subscribe(topics, self)
            while not self._stopping and not (until is not None and until(self)):
                self._step()
            self._drain_and_commit()
            if self._checkpoint.failed is not None:
                raise self._checkpoint.failed
        finally:
            try:
                self._edge.close()  # leaves the group; on_revoke commits what is settled
            finally:
                settler.close()
                self._executor.stop()
                if self._cancels is not None:
                    self._cancels.stop()
                if self._reporter is not None:
                    self._reporter.close(self._tick_event())
        return self._stats()

    def _stats(self) -> WorkerStats:
        counts = self._checkpoint.counts
        self.stats = WorkerStats(**vars(counts), polled=self.stats.polled, assigned=self.stats.assigned,
                                 revoked=self.stats.revoked, lost=self.stats.lost, skipped=self.stats.skipped)
        return self.stats

    def assignment(self) -> list[TP]:
        """The partitions this worker owns right now."""
        table = getattr(self, "_table", None)
        return sorted(table.states) if table is not None else []

    @property
    def counts(self) -> SettleCounts:
        """What has been settled so far (live, for progress displays and tests)."""
        checkpoint = getattr(self, "_checkpoint", None)
        return checkpoint.counts if checkpoint is not None else SettleCounts()

    def _is_tier(self, topic: str) -> bool:
        known = self._tier_topic.get(topic)
        if known is None:
            known = self._tier_topic[topic] = is_tier_topic(topic)
        return known

    # -- one turn of the loop ------------------------------------------------------------------------
    def _step(self) -> None:
        timeout = self.options.poll_timeout
        if timeout > SETTLE_WAIT and self._table.unsettled():
            timeout = SETTLE_WAIT  # tasks in flight: settle (and commit) them soon after they finish
        records = self._edge.poll_batch(self.options.batch_size, timeout)
        if records:
            self._hand_out(records)
        if self._pausing.changed():
            self._pausing.apply()
        if self._rates.queue_limits_moved():
            self._retune()  # a queue-wide limit was set, changed or cleared (kqueue queue limit)
        self._table.wake_due(now_ms())
        self._settle()
        self._tick()
        if self._report_state:
            self._report_state = False
            log.warning("worker state: %s", self.state())
        self._bounds.apply()
        self._check_overruns()
        self._land_commit()
        if not self._committer.busy and self._checkpoint.due():
            if not self._background_commits:
                self._commit()
                return
            batch = self._checkpoint.prepare()
            if batch is not None:
                self._committer.start(batch, self._edge.group_metadata())

    def _hand_out(self, records: list[Record]) -> None:
        if self._cancels is not None:
            self._cancels.wait_until_read()  # the first tasks wait for every pending cancel (and pause) to be known
        if self._pausing.changed():
            self._pausing.apply()  # before admission: nothing of a queue paused meanwhile starts
        if self._rates.queue_limits_moved():
            self._retune()  # before admission too: a worker's first tasks wait for its queue's limit
        tasks: list[Record] = []
        tier_records: list[Record] = []
        tier_of = self._tier_topic  # `_is_tier`, its cache read inline: this runs for every record
        for msg in records:
            topic: str = msg.topic()  # type: ignore[assignment]
            tier = tier_of.get(topic)
            if tier is None:
                tier = self._is_tier(topic)
            (tier_records if tier else tasks).append(msg)
        self.stats.polled += len(tasks)
        now = now_ms()
        if tier_records:
            self._outcomes.due(self._router.due_items(tier_records, now), now)
        runnable, skipped = self._outcomes.admit(self._decoder.decode_batch(tasks), now, self._bounds.share())
        self.stats.skipped += skipped
        self._executor.submit(runnable)

    def _settle(self) -> None:
        if self._pausing.returned:
            self._pausing.take_back()
        outcomes = self._executor.drain()
        if outcomes:
            self._outcomes.finished(outcomes, now_ms())
        self._outcomes.releases()

    def _tick(self) -> None:
        """About once a second, tell on_tick listeners (health, gauges) what the worker holds."""
        if not self._hooks.tick and self._reporter is None and self._cancels is None:
            return
        now = time.monotonic()
        if now < self._next_tick:
            return
        self._next_tick = now + TICK_EVERY
        event = self._tick_event()
        if self._hooks.tick:
            self._hooks.emit(self._hooks.tick, event)
        if self._reporter is not None:
            self._reporter.send(event, self._runner.running)
        if self._cancels is not None and self._cancels.pending:
            self._runner.interrupt(self._cancels.pending)

    def _tick_event(self) -> TickEvent:
        # A commit stuck in flight counts as failing from its start (it is given up only after 12 s).
        failing = max(self._health.failing_for(), self._committer.flight_seconds())
        return TickEvent(self.worker_id, self.options.group, self.options.concurrency, self._executor.busy_slots(),
                         self._table.unsettled(), tuple(self._table.states), self._edge.member_id(), failing,
                         self._stopping)

    def _check_overruns(self) -> None:
        """Too many threads it cannot reclaim (handlers past their limit, commits stuck in the
        client): stop, so the process restarts."""
        bound = self.options.max_overrun_threads
        bound = self.options.concurrency if bound is None else bound
        live = self._runner.overruns.live
        reason = None
        if live > bound:
            reason = (f"{live} sync handler threads are still running past their time limit (at most {bound}); "
                      "restarting the worker process to reclaim them")
        elif self._committer.abandoned >= MAX_ABANDONED_COMMITS:
            reason = (f"{self._committer.abandoned} commits got stuck inside the Kafka client; restarting the "
                      "worker process to shed their threads")
        if reason is not None and self.recycle_reason is None:
            self.recycle_reason = reason
            log.error("%s: draining first", reason)
            self._stopping = True

    def _land_commit(self, wait: bool = False) -> None:
        """Account for the background commit once it has landed (wait: until it has)."""
        landed = self._committer.landed(wait)
        if landed is not None:
            self._account(lambda: self._checkpoint.finish(*landed))

    def _commit(self) -> None:
        """Commit what is settled now and wait for it (revoke, drain), after the flight if any.

        Transactional commits fly on the committer even here, so a commit stuck in the client is
        given up (or reported) as in the loop, never blocking a revoke or a shutdown for good."""
        self._land_commit(wait=True)
        if not self._background_commits:
            self._account(lambda: self._checkpoint.commit(self._edge.group_metadata()))
            return
        batch = self._checkpoint.prepare()
        if batch is not None:
            self._committer.start(batch, self._edge.group_metadata())
            self._land_commit(wait=True)

    def _account(self, commit: Callable[[], CommitResult | None]) -> None:
        """Run `commit`; a batch Kafka refused is kept and goes out with the next commit."""
        shrunk, isolated = self._checkpoint.shrunk, self._checkpoint.isolated
        try:
            result = commit()
        except BatchNotCommitted as exc:
            if self._checkpoint.shrunk > shrunk or self._checkpoint.isolated > isolated:
                return  # its refused records became dead letters by reference, or their partition is held
            if self._health.failed(exc):
                self._checkpoint.failed = exc
                raise
            return
        if result is not None:
            self._health.landed()
            if self._hooks.commit:
                self._hooks.emit(self._hooks.commit, CommitEvent(result.offsets, result.records, result.seconds))

    def commits_failing_for(self) -> float:
        """Seconds since commits started failing (0: they go through): a readiness signal."""
        return self._health.failing_for()

    # -- shutdown ------------------------------------------------------------------------------------
    def _drain_and_commit(self) -> None:
        """Stop fetching, let fetched tasks finish within the grace, committing as they settle."""
        self._table.set_everywhere(PauseReason.DRAINING, True)
        # Everything fetched gets the grace to finish: dropping queued work would leave a gap below
        # completed offsets, and those would run again after the restart.
        # Tasks waiting for a rate limit's token are left to the partitions' next owners (not started).
        busy = lambda: self._table.unsettled() > self._executor.rate_waiting()  # noqa: E731
        if self.recycle_reason is not None:
            # Restarting to reclaim threads: start nothing more (it could leak more), let what runs
            # finish; what did not start is left uncommitted for the next incarnation.
            self._executor.halt()
            busy = lambda: self._executor.running() > 0  # noqa: E731
        deadline = self._drain_deadline = time.monotonic() + self.options.grace
        self._wait_settled(busy, deadline, poll=True)
        self._drain_deadline = time.monotonic()  # the drain is over: the revoke on leaving waits no more
        # Past the grace: not started, left uncommitted, so whoever owns the partition next runs them.
        self._executor.drop(lambda _item: True)
        self._commit()

    def _wait_settled(self, busy: Callable[[], bool], deadline: float, poll: bool) -> None:
        """Keep settling (and committing, so no batch waits on a long task) while `busy` and time is left.

        poll: keep polling the (paused) consumer meanwhile; not from inside a rebalance callback."""
        while busy() and time.monotonic() < deadline:
            if poll:
                self._edge.poll_batch(1, 0.02)  # serves the group; records fetched now are not tracked
            else:
                time.sleep(0.005)
            self._settle()
            self._tick()
            if self._checkpoint.due():
                self._commit()
        self._settle()

    # -- rebalance (called from inside poll_batch) --------------------------------------------------
    def on_assign(self, partitions: list[TP]) -> None:
        added = self._table.assign(partitions)
        self._pausing.assigned(added)
        self._retune()
        # What the last owner had completed above its final commit (core/completed.py).
        committed = self._edge.committed_offsets([s.tp for s in added if not s.is_tier])
        for owner in added:
            offset, note = committed.get(owner.tp, (-1, None))
            owner.inherit(decode_completed(offset, note))
        self.stats.assigned += len(partitions)
        self._partition_event("assigned", partitions)

    def on_revoke(self, partitions: list[TP]) -> None:
        states = [s for tp in partitions if (s := self._table.get(tp)) is not None]
        # Fetched tasks of these partitions get the grace to finish (fewer re-runs for the new owner).
        # When leaving, the drain already spent the grace.
        deadline = self._drain_deadline or time.monotonic() + self.options.grace
        self._retune(leaving=set(partitions))  # our rate limits' shares shrink before the next owner's grow
        # Tasks waiting for a rate limit's token are left to the next owner (at our share they could
        # hold the rebalance for the whole grace).
        self._wait_settled(lambda: unsettled_beyond_waits(states, self._executor), deadline, poll=False)
        self._commit()  # still ours until this returns: commit their final positions
        self._forget(partitions)
        self.stats.revoked += len(partitions)
        self._partition_event("revoked", partitions)

    def on_lost(self, partitions: list[TP]) -> None:
        # Already someone else's: commit nothing for them. Their routed records were held, never
        # written, so the new owner decides them afresh; no transaction is open to worry about.
        self._forget(partitions)
        self._retune()
        self.stats.lost += len(partitions)
        self._partition_event("lost", partitions)

    def _retune(self, leaving: set[TP] | frozenset[TP] = frozenset()) -> None:
        if self._rates is not None:  # each rate limit's share: its part of the partitions we own and keep
            self._rates.retune(self._executor, [tp for tp in self._table.states if tp not in leaving])

    def _forget(self, partitions: Iterable[TP]) -> None:
        self._table.remove(partitions)
        # Queued work of partitions no longer ours is dropped; running work finishes unheeded.
        self._executor.drop(lambda item: item.owner is None or not item.owner.live)

    def _partition_event(self, kind: str, partitions: list[TP]) -> None:
        if not partitions:
            return
        log.info("%s %s", kind, _summary(partitions))
        log.debug("%s %s", kind, sorted(f"{t}/{p}" for t, p in partitions))
        if self._hooks.partitions:
            self._hooks.emit(self._hooks.partitions, PartitionEvent(kind, partitions))  # type: ignore[arg-type]
