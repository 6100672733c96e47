"""Group-wide rate limits in a worker: a token bucket per limited task type, set to this worker's share
of the limit on every rebalance, and the pause that bounds what waits for tokens.

The share (core/ratelimit.group_share) is the limit times the part of the queue's main lane (`Q`) this
worker owns. A queue's lanes and tiers have equal partition counts and the range assignor gives
partition i of each lane to one member, so the main lane's part is the worker's part of the queue.
No coordinator: the shares add up to the limit while every partition is owned.

A queue-wide limit (`kqueue queue limit Q 500/s`, durable in `_kqueue.control` under the key
`@limit:Q`, core/queue_limits.py) is one more `GroupLimit` of the queue, with the same share:
`limits_of` then returns its bucket beside the type's for every task of the queue, and the gate
(core/rate_gate.py) starts a task only with a token of each. The poll loop asks `queue_limits_moved`
every turn and retunes when it did, so a running worker follows within the control watch's delay.

Tasks waiting for a token do not count towards the worker's bound of unsettled tasks (a limited
backlog would stop every other type and queue); they have a bound of their own, the same number: at
it, the partitions holding such tasks pause (`RATE`) until half of them have started.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from kqueue.core import names
from kqueue.core.queue_limits import QueueLimits
from kqueue.core.rate_gate import Limits
from kqueue.core.ratelimit import Rate, TokenBucket, group_share
from kqueue.core.records import TP
from kqueue.sdk.app import App
from kqueue.transport.admin import KafkaUnavailable, existing_topics, make_admin
from kqueue.worker.bounds import crossing
from kqueue.worker.executor import Executor
from kqueue.worker.partition_table import PartitionTable
from kqueue.worker.partitions import PartitionOwner, PauseReason
from kqueue.worker.work import WorkItem

log = logging.getLogger("kqueue.worker")
PartitionCounts = Callable[[list[str]], dict[str, int]]  # topic -> its partition count (those it knows)


def kafka_partition_counts(bootstrap: str) -> PartitionCounts:
    def counts(topics: list[str]) -> dict[str, int]:
        try:
            have = existing_topics(make_admin(bootstrap), timeout=10.0)
        except KafkaUnavailable as exc:
            log.warning("could not read the partition counts of %s for their rate limits: %s", topics, exc)
            return {}
        return {topic: have[topic] for topic in topics if topic in have}

    return counts


@dataclass(frozen=True, eq=False)
class GroupLimit:
    name: str  # what is limited: a task type ("queue.task"), or a whole queue ("queue (all types)")
    topic: str  # the queue's main lane, whose partitions set the share
    rate: Rate
    bucket: TokenBucket


@dataclass(frozen=True)
class QueueTasks:
    """A consumed queue, for its queue-wide limit: its main lane and its task types (ids of TaskDefs)."""

    topic: str
    task_ids: tuple[int, ...]


class RateLimits:
    def __init__(self, limits: list[GroupLimit], by_task: dict[int, Limits], partition_counts: PartitionCounts,
                 guess: int = 1, queues: dict[str, QueueTasks] | None = None,
                 queue_limits: QueueLimits | None = None) -> None:
        self._type_limits = limits
        self._type_by_task = by_task  # id(TaskDef) -> its type's bucket
        self._by_task = by_task  # id(TaskDef) -> the buckets its tasks need a token of (replaced, never changed)
        self._partition_counts = partition_counts
        self._guess = guess  # a queue's partition count while Kafka's is unknown: the app's default
        self._queues = queues or {}
        self._source = queue_limits  # the queue-wide limits read from _kqueue.control (None: none apply)
        self._seen = -1  # the version of `_source` applied
        self._queue_limits: dict[str, GroupLimit] = {}  # consumed queue -> its queue-wide limit now
        topics = sorted({limit.topic for limit in limits})
        self._totals = partition_counts(topics) if topics else {}

    @classmethod
    def of(cls, app: App, queues: Iterable[str], kafka: bool = True,
           queue_limits: QueueLimits | None = None) -> RateLimits:
        """The limits of the task types of `queues`, and (from `queue_limits`, as it changes) of the
        queues themselves. Partition counts come from Kafka, or (kafka=False, scripted tests) are the
        app's default."""
        wanted = set(queues)
        limits: list[GroupLimit] = []
        by_task: dict[int, Limits] = {}
        tasks: dict[str, list[int]] = {}
        for (queue, name), task in sorted(app.tasks.items()):
            if queue not in wanted:
                continue
            tasks.setdefault(queue, []).append(id(task))
            if task.rate_limit is not None:
                limit = GroupLimit(f"{queue}.{name}", names.lane_topic(queue, "normal", app.topic_prefix),
                                   task.rate_limit, TokenBucket())
                limits.append(limit)
                by_task[id(task)] = (limit.bucket,)
        counts = (kafka_partition_counts(app.bootstrap_servers) if kafka
                  else lambda topics: dict.fromkeys(topics, app.partitions))
        consumed = {queue: QueueTasks(names.lane_topic(queue, "normal", app.topic_prefix), tuple(ids))
                    for queue, ids in tasks.items()}
        return cls(limits, by_task, counts, app.partitions, consumed, queue_limits)

    @property
    def limits(self) -> list[GroupLimit]:
        return [*self._type_limits, *self._queue_limits.values()]

    def limits_of(self, item: WorkItem) -> Limits:
        return self._by_task.get(id(item.task), ())

    def queue_limits_moved(self) -> bool:
        """Whether a queue-wide limit was set, changed or cleared since the last retune (cheap)."""
        return self._source is not None and self._source.version != self._seen

    def _follow_queue_limits(self) -> bool:
        """Bring the queue-wide limits in line with `_source`; True if a queue gained or lost its
        limit (its tasks' buckets changed). A changed rate keeps the bucket: only its share moves."""
        if self._source is None:
            return False
        self._seen = self._source.version
        state = self._source.snapshot()
        regrouped = False
        for queue, consumed in self._queues.items():
            want, have = state.get(queue), self._queue_limits.get(queue)
            if want is None:
                if have is not None:
                    del self._queue_limits[queue]
                    regrouped = True
                    log.info("queue %s: its queue-wide rate limit was cleared", queue)
            elif have is None or have.rate != want.rate:
                bucket = have.bucket if have is not None else TokenBucket()  # a new one starts empty
                self._queue_limits[queue] = GroupLimit(f"{queue} (all types)", consumed.topic, want.rate, bucket)
                regrouped = regrouped or have is None
                log.info("queue %s: limited to %s for all its task types together", queue, want.rate)
        return regrouped

    def _regroup(self) -> None:
        """Each task type's buckets: its own limit's and its queue's (a task needs a token of each)."""
        by_task = dict(self._type_by_task)
        for queue, limit in self._queue_limits.items():
            for task_id in self._queues[queue].task_ids:
                by_task[task_id] = (*self._type_by_task.get(task_id, ()), limit.bucket)
        self._by_task = by_task  # swapped whole: runners read it under the executor's lock, the loop writes

    def shares(self, owned: Iterable[TP]) -> dict[TokenBucket, float]:
        """Each limit's tokens per second for a worker owning `owned`."""
        owned = list(owned)
        limits = self.limits
        mine = Counter(topic for topic, _ in owned)
        highest: dict[str, int] = {}
        for topic, partition in owned:
            highest[topic] = max(highest.get(topic, 0), partition + 1)
        grown = [limit.topic for limit in limits if highest.get(limit.topic, 0) > self._totals.get(limit.topic, 0)]
        if grown:  # partitions were added (or the count was never read): read it again
            self._totals.update(self._partition_counts(sorted(set(grown))))
        shares = {}
        for limit in limits:
            total = max(self._totals.get(limit.topic, self._guess), highest.get(limit.topic, 0))
            shares[limit.bucket] = group_share(limit.rate.per_second, mine[limit.topic], total)
        return shares

    def describe(self) -> dict[str, str]:
        """Each limit and its share here now (the worker's state, SIGUSR1)."""
        return {limit.name: f"{limit.rate} ({limit.bucket.rate:.4g}/s here)" for limit in self.limits}

    def retune(self, executor: Executor, owned: list[TP]) -> None:
        """Set the executor's buckets to this worker's shares (after every rebalance, and when a
        queue-wide limit moved). A queue that gained or lost its limit has its keys' readiness
        decided again: a key made ready before the limit came needs the new bucket's token too, and
        one parked on a cleared limit's bucket is let go."""
        regrouped = self._follow_queue_limits()
        shares = self.shares(owned)
        executor.retune(shares)  # a new bucket gets its rate before any task can wait on it
        if regrouped:
            self._regroup()
            executor.drop(lambda _item: False)  # drops nothing; the ready keys are admitted again
        if shares:
            log.info("rate limits: %s", ", ".join(f"{name} {share}" for name, share in self.describe().items()))


def unsettled_beyond_waits(states: Iterable[PartitionOwner], executor: Executor) -> bool:
    """Whether any of `states` has unsettled tasks other than those waiting for a rate limit's token
    (or parked by a pause)."""
    waiting = executor.rate_waiting_by_partition()
    return any(s.outstanding > waiting.get(s.tp, 0) for s in states)  # parked by a pause: not counted either


class RateHolds:
    """The partitions holding tasks that wait for a token pause (`RATE`) while the worker holds its
    bound of such tasks, and resume at half of it."""

    def __init__(self, table: PartitionTable, executor: Executor) -> None:
        self._table = table
        self.waiting = executor.rate_waiting  # tasks waiting for a token now
        self._by_partition = executor.rate_waiting_by_partition
        self.held = False

    def check(self, limit: int) -> None:
        """Every turn of the loop: held at once when the bound is reached (one poll hands out hundreds
        of records, and many polls fit between two looks of `apply`)."""
        if not self.held and self.waiting() >= limit:
            self.held = True
            self._pause_holders()

    def apply(self, limit: int) -> None:
        """About every 20 ms: resume at half the bound; while held, pause partitions that filled since."""
        if not self.held:
            return
        if crossing(self.waiting(), limit, paused=True) is False:
            self.held = False
            for owner in self._table.states.values():
                owner.unpause(PauseReason.RATE)
        else:
            self._pause_holders()

    def _pause_holders(self) -> None:
        waiting = self._by_partition()
        for owner in self._table.states.values():
            if waiting.get(owner.tp):
                owner.pause(PauseReason.RATE)
