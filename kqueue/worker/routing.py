"""Where a failed task or a due tier record goes next, as a record to produce. Pure (clock passed in)."""

from __future__ import annotations

import dataclasses
import random

from kqueue.core import names
from kqueue.core.headers import dead_letter_headers, delivered_headers, retry_headers, to_header_list
from kqueue.core.json_rules import dumps_checked
from kqueue.core.oversize import MAX_RECORD_BYTES, reference_letter, too_large_reason, trimmed
from kqueue.core.records import OutRecord, RecordKind, status_record
from kqueue.core.retry import GiveUp, Tiers, decide_retry, route_due_record
from kqueue.core.status import TaskEvent
from kqueue.core.topology import worker_topics
from kqueue.worker.work import Failure, WorkItem


def route_failure(item: WorkItem, failure: Failure, tiers: Tiers, prefix: str, now_ms: int,
                  rng: random.Random | None = None, limit: int = MAX_RECORD_BYTES) -> list[OutRecord]:
    """A failed attempt: to the delay tier that fits its backoff, or to the DLQ when it is over."""
    task = item.task
    meta = item.meta
    max_attempts = meta.max_attempts or (task.max_attempts if task is not None else 1)
    if task is None or not failure.retryable:
        return _dead_letter(item, failure, prefix, now_ms, limit)
    decision = decide_retry(meta.attempt, max_attempts, now_ms, tiers, task.retry_policy,
                            failure.requested_delay, failure.reject, rng)
    if isinstance(decision, GiveUp):
        return _dead_letter(item, failure, prefix, now_ms, limit)
    headers = retry_headers(item.headers, item.task_id, item.origin, decision.attempt, max_attempts,
                            decision.not_before_ms, item.topic, failure.error_type, failure.message,
                            failure.trace, now_ms)
    topic = names.delay_topic(item.queue, decision.tier, prefix)
    retry = OutRecord(RecordKind.RETRY, topic, item.value, item.key, headers, item.partition)
    return _fitted(retry, item, prefix, now_ms, limit, f"{failure.error_type}: {failure.message}")


def _dead_letter(item: WorkItem, failure: Failure, prefix: str, now_ms: int, limit: int) -> list[OutRecord]:
    """The dead letter, and a `failed` status event stamped with the same time as its kq-failed-at
    (which is how `dlq replay` recognises a dead letter it has not replayed yet)."""
    headers = dead_letter_headers(item.headers, item.task_id, item.origin, failure.error_type, failure.message,
                                  failure.trace, now_ms)
    letter = OutRecord(RecordKind.DEAD_LETTER, names.dlq_topic(item.queue, prefix), item.value, item.key, headers,
                       item.partition)
    event = TaskEvent(item.task_id, item.queue, item.meta.task_type or "", "failed", item.meta.attempt, now_ms,
                      f"{failure.error_type}: {failure.message}"[:1000])
    return [*_fitted(letter, item, prefix, now_ms, limit), status_record(event, prefix)]


def _fitted(record: OutRecord, item: WorkItem, prefix: str, now_ms: int, limit: int,
            last_error: str | None = None) -> list[OutRecord]:
    """`record` with its error headers trimmed to fit `limit`, carrying the dead letter by reference
    to write if Kafka refuses it anyway (a topic with a lower max.message.bytes); or, when it cannot
    fit, that dead letter now."""
    fitting = trimmed(record, limit)
    if fitting is None:
        return list(_by_reference(record, item, prefix, now_ms, too_large_reason(record, limit), last_error))
    def fallback(refusal: str | None) -> tuple[OutRecord, ...]:
        reason = too_large_reason(record, None) if refusal is None else f"refused by {record.topic}: {refusal}"
        return _by_reference(record, item, prefix, now_ms, reason, last_error,
                             "RecordTooLarge" if refusal is None else "RecordRefused")

    return [dataclasses.replace(fitting, fallback=fallback)]


def _by_reference(record: OutRecord, item: WorkItem, prefix: str, now_ms: int, reason: str,
                  last_error: str | None, error_type: str = "RecordTooLarge") -> tuple[OutRecord, ...]:
    """The dead letter by reference standing for `record` (payload left at this item's position).

    A dead letter keeps its error (its `failed` event is already beside it). Anything else (a retry,
    a tier move) becomes a dead letter because of its size: that is its error, with a `failed` event."""
    if record.kind is RecordKind.DEAD_LETTER:
        return (reference_letter(record, item.origin),)
    message = f"{reason}; last error {last_error}" if last_error else reason
    letter = reference_letter(record, item.origin, error_type, message, now_ms)
    event = TaskEvent(item.task_id, item.queue, item.meta.task_type or "", "failed", item.meta.attempt, now_ms,
                      f"{error_type}: {message}"[:1000])
    return letter, status_record(event, prefix)


def route_due(item: WorkItem, tiers: Tiers, prefix: str, now_ms: int,
              limit: int = MAX_RECORD_BYTES) -> list[OutRecord]:
    """A tier record whose tier delay is over: to its target if its time has come, else a shorter wait."""
    meta = item.meta
    target = item.headers.get(names.H_TARGET) or names.main_topic(item.queue, prefix)
    lanes = worker_topics(item.queue, prefix)
    if target not in lanes:
        # A tier delivers only into its own queue's lanes: anything else (a typo, a topic that does
        # not exist, another queue's topic) would fail the transaction of every partition at once.
        failure = Failure.unrunnable("InvalidTarget", f"{names.H_TARGET} {target!r} is not a lane of queue "
                                     f"{item.queue!r} (one of {', '.join(lanes)})")
        return _dead_letter(item, failure, prefix, now_ms, limit)
    move = route_due_record(meta.not_before, now_ms, tiers)
    if move.topic_kind == "target":
        record = OutRecord(RecordKind.DELIVER, target, item.value, item.key, delivered_headers(item.headers),
                           item.partition)
    else:
        assert move.tier is not None
        record = OutRecord(RecordKind.RE_TIER, names.delay_topic(item.queue, move.tier, prefix), item.value,
                           item.key, to_header_list(dict(item.headers)), item.partition)
    return _fitted(record, item, prefix, now_ms, limit)


def retire_cancel(item: WorkItem, prefix: str) -> OutRecord:
    """The tombstone for a cancel that came too late: the task completed anyway."""
    return OutRecord(RecordKind.CONTROL, names.control_topic(prefix), None, item.task_id.encode(), [], None)


def cancel_records(item: WorkItem, prefix: str, now_ms: int) -> list[OutRecord]:
    """A cancelled task: the tombstone that retires its cancel command, and its `cancelled` event."""
    tombstone = OutRecord(RecordKind.CANCEL, names.control_topic(prefix), None, item.task_id.encode(), [], None)
    event = TaskEvent(item.task_id, item.queue, item.meta.task_type or "", "cancelled", item.meta.attempt, now_ms)
    return [tombstone, status_record(event, prefix)]


# Settlements after which a task is over (a unique task's key is released with them).
FINAL_KINDS = frozenset({RecordKind.DEAD_LETTER, RecordKind.CANCEL, RecordKind.RESULT, RecordKind.DUPLICATE})


def duplicate_records(item: WorkItem, holder_task_id: str, prefix: str, now_ms: int) -> list[OutRecord]:
    """A unique task enqueued while another of its key was unfinished: its `cancelled` event,
    naming the task it duplicates."""
    task_type = item.task.name if item.task is not None else item.meta.task_type or ""
    event = TaskEvent(item.task_id, item.queue, task_type, "cancelled", item.meta.attempt, now_ms,
                      f"Duplicate: unique task {holder_task_id} with the same unique key is unfinished")
    return [dataclasses.replace(status_record(event, prefix), kind=RecordKind.DUPLICATE)]


RESULT_LIMIT = 8192  # bytes of JSON a task may keep as its result (the status view is not a blob store)


def result_records(item: WorkItem, prefix: str, now_ms: int, worker: str | None = None) -> list[OutRecord]:
    """A completed task that keeps its result: its `completed` event carrying the value as standard
    JSON (or, when the value is not JSON, holds NaN or Infinity, nests deeper than MAX_JSON_DEPTH
    levels or is too large, saying why it was not kept)."""
    result: str | None = None
    note: str | None = None
    try:
        result = dumps_checked(item.result, "the value")
        size = len(result.encode())  # a lone surrogate in a string has no UTF-8 form: not JSON either
    except TypeError as exc:
        note = f"result not kept: not JSON ({exc})"
    except UnicodeEncodeError as exc:
        note = f"result not kept: a string in it is not Unicode text ({exc.reason})"
    except ValueError as exc:
        note = f"result not kept: {exc}"
    if note is not None:
        result = None
    elif size > RESULT_LIMIT:
        note = f"result not kept: {size} bytes of JSON, over the {RESULT_LIMIT}-byte limit"
        result = None
    task_type = item.task.name if item.task is not None else item.meta.task_type or ""
    event = TaskEvent(item.task_id, item.queue, task_type, "completed", item.meta.attempt, now_ms, note, worker,
                      result)
    return [dataclasses.replace(status_record(event, prefix), kind=RecordKind.RESULT)]
