"""Where a failed task or a due tier record goes next, as a record to produce. Pure (clock passed in)."""

from __future__ import annotations

import random

from kqueue.core import names
from kqueue.core.headers import dead_letter_headers, delivered_headers, retry_headers, to_header_list
from kqueue.core.records import OutRecord, RecordKind, status_record
from kqueue.core.retry import GiveUp, Tiers, decide_retry, route_due_record
from kqueue.core.status import TaskEvent
from kqueue.worker.work import Failure, WorkItem


def route_failure(item: WorkItem, failure: Failure, tiers: Tiers, prefix: str, now_ms: int,
                  rng: random.Random | None = None) -> list[OutRecord]:
    """A failed attempt: to the delay tier that fits its backoff, or to the DLQ when it is over."""
    task = item.task
    meta = item.meta
    max_attempts = meta.max_attempts or (task.max_attempts if task is not None else 1)
    if task is None or not failure.retryable:
        return _dead_letter(item, failure, prefix, now_ms)
    decision = decide_retry(meta.attempt, max_attempts, now_ms, tiers, task.retry_policy,
                            failure.requested_delay, failure.reject, rng)
    if isinstance(decision, GiveUp):
        return _dead_letter(item, failure, prefix, now_ms)
    headers = retry_headers(item.headers, item.task_id, item.origin, decision.attempt, max_attempts,
                            decision.not_before_ms, item.topic, failure.error_type, failure.message,
                            failure.trace, now_ms)
    topic = names.delay_topic(item.queue, decision.tier, prefix)
    return [OutRecord(RecordKind.RETRY, topic, item.value, item.key, headers, item.partition)]


def _dead_letter(item: WorkItem, failure: Failure, prefix: str, now_ms: int) -> list[OutRecord]:
    """The dead letter, and a `failed` status event stamped with the same time as its kq-failed-at
    (which is how `dlq replay` recognises a dead letter it has not replayed yet)."""
    headers = dead_letter_headers(item.headers, item.task_id, item.origin, failure.error_type, failure.message,
                                  failure.trace, now_ms)
    letter = OutRecord(RecordKind.DEAD_LETTER, names.dlq_topic(item.queue, prefix), item.value, item.key, headers,
                       item.partition)
    event = TaskEvent(item.task_id, item.queue, item.meta.task_type or "", "failed", item.meta.attempt, now_ms,
                      f"{failure.error_type}: {failure.message}"[:1000])
    return [letter, status_record(event, prefix)]


def route_due(item: WorkItem, tiers: Tiers, prefix: str, now_ms: int) -> OutRecord:
    """A tier record whose tier delay is over: to its target if its time has come, else a shorter wait."""
    meta = item.meta
    move = route_due_record(meta.not_before, now_ms, tiers)
    target = item.headers.get(names.H_TARGET) or names.main_topic(item.queue, prefix)
    if move.topic_kind == "target":
        return OutRecord(RecordKind.DELIVER, target, item.value, item.key, delivered_headers(item.headers),
                         item.partition)
    assert move.tier is not None
    return OutRecord(RecordKind.RE_TIER, names.delay_topic(item.queue, move.tier, prefix), item.value, item.key,
                     to_header_list(dict(item.headers)), item.partition)
