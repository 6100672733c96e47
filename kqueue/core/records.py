"""What settling a task produces, and what became of it. Pure data shared by the worker and the Kafka edge."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field

from kqueue.core import names
from kqueue.core.headers import HeaderList
from kqueue.core.status import TaskEvent

TP = tuple[str, int]  # (topic, partition): the one partition type of the project


class RecordKind(enum.StrEnum):
    RETRY = "retry"  # to a delay tier
    DEAD_LETTER = "dead-letter"  # to Q.dlq
    STATUS = "status"  # a TaskEvent to _kqueue.status
    DELIVER = "deliver"  # a due tier record to its target
    RE_TIER = "re-tier"  # a due tier record to a shorter tier
    CANCEL = "cancel"  # a tombstone for the cancel command in _kqueue.control: the task was cancelled
    RESULT = "result"  # a `completed` TaskEvent carrying the result of a task that keeps it
    DUPLICATE = "duplicate"  # a `cancelled` TaskEvent: a unique task enqueued while another was unfinished
    CONTROL = "control"  # a tombstone retiring a cancel that came too late (the task completed); counts nothing
    CLAIM = "claim"  # an idempotency or unique claim (or its release) in Q.dedup; rides with a settlement
    PARK = "park"  # a task parked behind its key's retry: its entry in Q.dedup (core/ordering.py)
    UNPARK = "unpark"  # the oldest parked task of a key, copied to the end of its lane when its turn comes


class Settlement(enum.StrEnum):
    """How a task (or a due tier record) was settled."""

    COMPLETED = "completed"
    RETRIED = "retried"
    DEAD_LETTERED = "dead-lettered"
    DELIVERED = "delivered"
    RE_TIERED = "re-tiered"
    CANCELLED = "cancelled"
    PARKED = "parked"  # an ordered key's later task, waiting behind its retry (runs later, as a copy)


SETTLEMENT_OF_KIND = {
    RecordKind.RETRY: Settlement.RETRIED,
    RecordKind.DEAD_LETTER: Settlement.DEAD_LETTERED,
    RecordKind.DELIVER: Settlement.DELIVERED,
    RecordKind.RE_TIER: Settlement.RE_TIERED,
    RecordKind.CANCEL: Settlement.CANCELLED,
    RecordKind.RESULT: Settlement.COMPLETED,
    RecordKind.DUPLICATE: Settlement.CANCELLED,
    RecordKind.PARK: Settlement.PARKED,
}


@dataclass(frozen=True, slots=True)
class OutRecord:
    """A record the worker produces as part of settling a batch (same partition number as its source)."""

    kind: RecordKind
    topic: str
    value: bytes | None
    key: bytes | None
    headers: HeaderList
    partition: int | None  # None: by key (status events)
    # What to write instead if Kafka refuses this record (a dead letter by reference, see
    # core/oversize.py), given why (None: too large); built only if needed.
    fallback: Callable[[str | None], tuple[OutRecord, ...]] | None = field(default=None, compare=False, repr=False)


def status_record(event: TaskEvent, prefix: str) -> OutRecord:
    """A lifecycle event for _kqueue.status, keyed by task id (the topic is compacted)."""
    return OutRecord(RecordKind.STATUS, names.status_topic(prefix), event.encode(), event.task_id.encode(), [], None)


def dedup_record(queue: str, partition: int, key: str, value: bytes | None, prefix: str = "",
                 kind: RecordKind = RecordKind.CLAIM) -> OutRecord:
    """A record of `Q.dedup` (a claim, an ordered key's block or park entry; None: its tombstone),
    on the same partition number as the task it is about."""
    return OutRecord(kind, names.dedup_topic(queue, prefix), value, key.encode(), [], partition)
