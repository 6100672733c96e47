"""Group-wide rate limits in a worker: a token bucket per limited task type, set to this worker's share
of the limit on every rebalance, and the pause that bounds what waits for tokens.

The share (core/ratelimit.group_share) is the limit times the part of the queue's main lane (`Q`) this
worker owns. A queue's lanes and tiers have equal partition counts and the range assignor gives
partition i of each lane to one member, so the main lane's part is the worker's part of the queue.
No coordinator: the shares add up to the limit while every partition is owned.

A per-queue limit (`kqueue queue limit Q 500/s`, durable in `_kqueue.control`) is one more
`GroupLimit` of the queue, with the same share: `limits_of` then returns its bucket beside the type's
for every task of the queue, and the gate (core/rate_gate.py) starts a task only with a token of each.

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
    name: str  # what is limited: a task type ("queue.task")
    topic: str  # the queue's main lane, whose partitions set the share
    rate: Rate
    bucket: TokenBucket


class RateLimits:
    def __init__(self, limits: list[GroupLimit], by_task: dict[int, Limits], partition_counts: PartitionCounts,
                 guess: int = 1) -> None:
        self.limits = limits
        self._by_task = by_task  # id(TaskDef) -> the buckets its tasks need a token of
        self._partition_counts = partition_counts
        self._guess = guess  # a queue's partition count while Kafka's is unknown: the app's default
        self._totals = partition_counts(sorted({limit.topic for limit in limits}))

    @classmethod
    def of(cls, app: App, queues: Iterable[str], kafka: bool = True) -> RateLimits | None:
        """The limits of the task types of `queues` (None: none is limited, and nothing is checked).
        Partition counts come from Kafka, or (kafka=False, scripted tests) are the app's default."""
        wanted = set(queues)
        limits: list[GroupLimit] = []
        by_task: dict[int, Limits] = {}
        for (queue, name), task in sorted(app.tasks.items()):
            if queue in wanted and task.rate_limit is not None:
                limit = GroupLimit(f"{queue}.{name}", names.lane_topic(queue, "normal", app.topic_prefix),
                                   task.rate_limit, TokenBucket())
                limits.append(limit)
                by_task[id(task)] = (limit.bucket,)
        if not limits:
            return None
        counts = (kafka_partition_counts(app.bootstrap_servers) if kafka
                  else lambda topics: dict.fromkeys(topics, app.partitions))
        return cls(limits, by_task, counts, app.partitions)

    def limits_of(self, item: WorkItem) -> Limits:
        return self._by_task.get(id(item.task), ())

    def shares(self, owned: Iterable[TP]) -> dict[TokenBucket, float]:
        """Each limit's tokens per second for a worker owning `owned`."""
        owned = list(owned)
        mine = Counter(topic for topic, _ in owned)
        highest: dict[str, int] = {}
        for topic, partition in owned:
            highest[topic] = max(highest.get(topic, 0), partition + 1)
        grown = [limit.topic for limit in self.limits if highest.get(limit.topic, 0) > self._totals.get(limit.topic, 0)]
        if grown:  # partitions were added (or the count was never read): read it again
            self._totals.update(self._partition_counts(sorted(set(grown))))
        shares = {}
        for limit in self.limits:
            total = max(self._totals.get(limit.topic, self._guess), highest.get(limit.topic, 0))
            shares[limit.bucket] = group_share(limit.rate.per_second, mine[limit.topic], total)
        return shares

    def describe(self) -> dict[str, str]:
        """Each limit and its share here now (the worker's state, SIGUSR1)."""
        return {limit.name: f"{limit.rate} ({limit.bucket.rate:.4g}/s here)" for limit in self.limits}

    def retune(self, executor: Executor, owned: list[TP]) -> None:
        """Set the executor's buckets to this worker's shares (after every rebalance)."""
        shares = self.shares(owned)
        executor.retune(shares)
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
