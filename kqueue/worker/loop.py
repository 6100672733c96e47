"""The poll loop: fetch a batch, decode, hand to the executor, settle, commit. It never waits on a handler."""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from kqueue.core.topology import worker_topics
from kqueue.sdk.app import App
from kqueue.transport.config import consumer_config
from kqueue.transport.producer import TaskProducer
from kqueue.worker.checkpoint import TP, Checkpoint
from kqueue.worker.decode import Decoder
from kqueue.worker.executor import Executor
from kqueue.worker.work import Outcome, WorkItem

log = logging.getLogger("kqueue.worker")


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
    consumer_overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class WorkerStats:
    completed: int = 0
    dead_lettered: int = 0
    polled: int = 0


class Worker:
    def __init__(self, app: App, options: WorkerOptions) -> None:
        self.app = app
        self.options = options
        self.queues = options.queues or app.queues()
        if not self.queues:
            raise ValueError("the app has no tasks, so there is nothing to consume")
        self._stopping = False
        self._paused: set[TP] = set()
        self._inflight = 0
        self.stats = WorkerStats()
        self._on_idle: Callable[[Worker], None] | None = None

    # -- lifecycle -----------------------------------------------------------------------------------
    def request_stop(self, *_: object) -> None:
        self._stopping = True

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)

    def run(self, until: Callable[[Worker], bool] | None = None) -> WorkerStats:
        """Consume until stopped (signal, `request_stop`, or `until(worker)` returning True)."""
        opts = self.options
        for queue in self.queues:
            self.app.ensure_queue(queue)
        self._consumer = Consumer(consumer_config(self.app.bootstrap_servers, opts.group,
                                                  **opts.consumer_overrides))
        self._producer = TaskProducer(self.app.bootstrap_servers)
        self._checkpoint = Checkpoint(self._consumer, self._producer, self.app.topic_prefix,
                                      opts.commit_interval)
        self._executor = Executor(opts.concurrency)
        self._decoder = Decoder(self.app)
        topics = [t for q in self.queues for t in worker_topics(q, self.app.topic_prefix)]
        self._consumer.subscribe(topics, on_assign=self._on_assign, on_revoke=self._on_revoke,
                                 on_lost=self._on_lost)
        try:
            while not self._stopping and not (until is not None and until(self)):
                self._step()
            self._drain_and_commit()
        finally:
            self._consumer.close()  # leaves the group; the revoke callback commits what is settled
            self._executor.stop()
        self.stats.completed = self._checkpoint.completed
        self.stats.dead_lettered = self._checkpoint.dead_lettered
        return self.stats

    # -- one turn of the loop ------------------------------------------------------------------------
    def _step(self) -> None:
        messages = self._consumer.consume(self.options.batch_size, timeout=self.options.poll_timeout)
        if messages:
            self._hand_out(messages)
        self._settle()
        self._apply_backpressure()
        if self._checkpoint.due():
            self._checkpoint.commit()

    def _hand_out(self, messages: list[Any]) -> None:
        good = []
        for msg in messages:
            if msg.error() is not None:
                log.warning("consumer error: %s", msg.error())
                continue
            good.append(msg)
        self.stats.polled += len(good)
        runnable: list[WorkItem] = []
        failed: list[Outcome] = []
        for item, failure in self._decoder.decode_batch(good):
            # Track in offset order (before anything can settle), then split by what to do.
            if not self._checkpoint.track(item):
                continue  # partition no longer ours
            if failure is None:
                runnable.append(item)
            else:
                failed.append((item, failure))
        self._inflight += len(runnable)
        self._executor.submit(runnable)
        if failed:
            self._checkpoint.settle(failed)

    def _settle(self) -> None:
        outcomes = self._executor.drain()
        if outcomes:
            self._inflight -= len(outcomes)
            self._checkpoint.settle(outcomes)

    def _max_inflight(self) -> int:
        return self.options.max_inflight or max(self.options.batch_size * 4, self.options.concurrency * 4)

    def _apply_backpressure(self) -> None:
        """Pause every assigned partition while too much is unsettled; the loop keeps polling."""
        limit = self._max_inflight()
        assignment = {(tp.topic, tp.partition) for tp in self._consumer.assignment()}
        if self._inflight >= limit:
            newly = assignment - self._paused
            if newly:
                self._consumer.pause([TopicPartition(t, p) for t, p in newly])
                self._paused |= newly
        elif self._paused and self._inflight <= limit // 2:
            still_ours = self._paused & assignment
            if still_ours:
                self._consumer.resume([TopicPartition(t, p) for t, p in still_ours])
            self._paused.clear()

    # -- shutdown ------------------------------------------------------------------------------------
    def _drain_and_commit(self) -> None:
        """Stop fetching, let in-flight tasks finish within the grace, settle, commit."""
        assignment = self._consumer.assignment()
        if assignment:
            self._consumer.pause(assignment)
        # Everything fetched gets the grace to finish: dropping queued work would leave a gap below
        # completed offsets, and those would run again after the restart.
        deadline = time.monotonic() + self.options.grace
        while self._inflight > 0 and time.monotonic() < deadline:
            self._consumer.consume(1, timeout=0.05)  # keeps membership; partitions are paused
            self._settle()
        self._settle()
        # Past the grace: not started, left uncommitted, so whoever owns the partition next runs them.
        self._inflight -= self._executor.drop(lambda _item: True)
        self._checkpoint.commit()

    # -- rebalance -----------------------------------------------------------------------------------
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._checkpoint.assign((tp.topic, tp.partition) for tp in partitions)
        log.info("assigned %s", [f"{tp.topic}/{tp.partition}" for tp in partitions])

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        lost = {(tp.topic, tp.partition) for tp in partitions}

        def doomed(item: WorkItem) -> bool:
            return (item.topic, item.partition) in lost

        # Finish what was fetched for these partitions within the grace (fewer re-runs for the new
        # owner); what is left is dropped uncommitted and redelivered there.
        deadline = time.monotonic() + self.options.grace
        while self._executor.pending(doomed) and time.monotonic() < deadline:
            time.sleep(0.005)
            self._settle()
        self._inflight -= self._executor.drop(doomed)
        self._settle()
        self._checkpoint.commit()
        self._checkpoint.revoke(lost)
        self._paused -= lost
        log.info("revoked %s", [f"{tp.topic}/{tp.partition}" for tp in partitions])

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Ownership is already gone: commit nothing for these, just forget them.
        lost = {(tp.topic, tp.partition) for tp in partitions}
        self._inflight -= self._executor.drop(lambda item: (item.topic, item.partition) in lost)
        self._checkpoint.revoke(lost)
        self._paused -= lost
