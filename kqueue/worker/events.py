"""The events the worker hands to middleware, built from its own state (pure)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import overload

from kqueue.core.names import tier_of_topic
from kqueue.core.records import Settlement
from kqueue.sdk.middleware import UNREAD, SettleEvent
from kqueue.worker.work import Failure, WorkItem


def settle_event(item: WorkItem, outcome: Settlement, failure: Failure | None, now_ms: int,
                 destination: str | None = None) -> SettleEvent:
    meta = item.parsed_meta
    if meta is not None:  # a failure already parsed every header
        task_id, task_type, attempt, enqueued_at = item.task_id, meta.task_type, meta.attempt, meta.enqueued_at
    else:  # a completion: the event reads kq-id, kq-attempt, kq-enqueued-at only if a hook asks
        task_id = attempt = enqueued_at = UNREAD
        task_type = item.task.name if item.task is not None else item.meta.task_type
    return SettleEvent(outcome, task_id, task_type, item.queue, item.topic, item.partition, item.offset, item.key,
                       attempt, failure.error_type if failure else None, failure.message if failure else None,
                       enqueued_at, item.started_at or None, item.run_seconds, now_ms, destination,
                       tier_of_topic(destination) if destination is not None else None, item.raw_headers)


def completed_event(item: WorkItem, now_ms: int) -> SettleEvent:
    """`settle_event` for a completion, the path every successful task takes: nothing parsed."""
    task = item.task
    enqueued_at = item.enqueued_at_ms if item.enqueued_at_ms > 0 else UNREAD  # read while decoding, or not
    return SettleEvent(Settlement.COMPLETED, UNREAD, task.name if task is not None else item.meta.task_type,
                       item.queue, item.topic, item.partition, item.offset, item.key, UNREAD, None, None,
                       enqueued_at, item.started_at or None, item.run_seconds, now_ms, None, None, item.raw_headers)


class Completions(Sequence[SettleEvent]):
    """Tasks completed together, handed to `on_settle_many` as one sequence: each `SettleEvent` is
    built when it is read, so a hook that does not read them (a log off at INFO) costs nothing per
    task, and the metrics tally reads `items` without building events at all."""

    __slots__ = ("items", "settled_at_ms")

    def __init__(self, items: list[WorkItem], settled_at_ms: int) -> None:
        self.items = items
        self.settled_at_ms = settled_at_ms

    def __len__(self) -> int:
        return len(self.items)

    @overload
    def __getitem__(self, index: int) -> SettleEvent: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[SettleEvent]: ...

    def __getitem__(self, index: int | slice) -> SettleEvent | Sequence[SettleEvent]:
        if isinstance(index, slice):
            return Completions(self.items[index], self.settled_at_ms)
        return completed_event(self.items[index], self.settled_at_ms)

    def __iter__(self) -> Iterator[SettleEvent]:
        now = self.settled_at_ms
        for item in self.items:
            yield completed_event(item, now)
