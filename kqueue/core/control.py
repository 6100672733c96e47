"""Commands in `_kqueue.control` (compacted; key = task id or queue): cancel, pause, resume, and a
queue's rate limit (key `@limit:` + queue, core/queue_limits.py). Pure (but for reading
KQUEUE_CANCEL_EXPIRY).

A cancel applies to one life of a task: ids are reused on purpose (an idempotency key re-enqueued
after its window, a DLQ replay), so a cancel issued at `at_ms` cancels only a record whose life
began at or before then: `kq-replayed-at` if it was replayed, else `kq-enqueued-at` (a retry keeps
both, so a cancel still reaches the attempts of the life it was issued for). A record with neither
header (a foreign producer's) is cancelled, as before lives were told apart. And a cancel expires:
`expiry` (KQUEUE_CANCEL_EXPIRY on workers, default 7 days) after the later of `at_ms` and `due_at_ms`
(when the task was due to run, if the issuer knew it was scheduled), so a cancel for an id that
never comes, or came and finished, does not stay in the compacted topic for ever.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from kqueue.core.codec import SchemaStore, decode_payload, encode_avro
from kqueue.core.durations import parse_duration
from kqueue.core.headers import RawHeaders, header_dict
from kqueue.core.names import H_ENQUEUED_AT, H_REPLAYED_AT
from kqueue.core.system_schemas import (
    CONTROL_COMMAND_SCHEMA,
    CONTROL_COMMAND_V1_SCHEMA,
    CONTROL_COMMAND_V2_SCHEMA,
    CONTROL_COMMAND_V3_SCHEMA,
)

if TYPE_CHECKING:
    from kqueue.core.queue_limits import QueueLimits

_STORE = SchemaStore()
_STORE.add(CONTROL_COMMAND_SCHEMA)
_STORE.add(CONTROL_COMMAND_V1_SCHEMA)  # commands written before `due_at_ms` existed
_STORE.add(CONTROL_COMMAND_V2_SCHEMA)  # commands written before `reason` existed
_STORE.add(CONTROL_COMMAND_V3_SCHEMA)  # commands written before `limit` and `rate` existed

CANCEL_EXPIRY_ENV = "KQUEUE_CANCEL_EXPIRY"
DEFAULT_CANCEL_EXPIRY = 7 * 24 * 3600.0  # seconds; as long as the longest idempotency window
NEVER = 2**63 - 1


@dataclass(frozen=True)
class ControlCommand:
    command: str  # cancel | pause | resume | limit
    target: str  # a task id (cancel) or a queue (pause, resume, limit)
    at_ms: int  # when it was issued; a cancel applies to task lives begun at or before it
    due_at_ms: int | None = None  # a cancel of a scheduled task: when it is due (its expiry counts from then)
    reason: str | None = None  # a pause: why (shown with the queue's state)
    rate: str | None = None  # a limit: the queue's rate ("500/s"); None lifts it

    def encode(self) -> bytes:
        """In the oldest version that holds the command, so workers that predate a field still read it."""
        record = {"command": self.command, "target": self.target, "at_ms": self.at_ms}
        if self.command == "limit" or self.rate is not None:  # only this version knows the verb
            return encode_avro(CONTROL_COMMAND_SCHEMA, {**record, "due_at_ms": self.due_at_ms, "reason": self.reason,
                                                        "rate": self.rate})
        if self.reason is not None:
            return encode_avro(CONTROL_COMMAND_V3_SCHEMA, {**record, "due_at_ms": self.due_at_ms,
                                                           "reason": self.reason})
        if self.due_at_ms is None:
            # The first version's bytes: workers that predate `due_at_ms` still read the command.
            return encode_avro(CONTROL_COMMAND_V1_SCHEMA, record)
        # The second version's bytes: workers that predate `reason` still read it.
        return encode_avro(CONTROL_COMMAND_V2_SCHEMA, {**record, "due_at_ms": self.due_at_ms})

    @classmethod
    def decode(cls, value: bytes) -> ControlCommand:
        record = decode_payload(value, "avro", CONTROL_COMMAND_SCHEMA, _STORE)
        return cls(record["command"], record["target"], record["at_ms"], record.get("due_at_ms"),
                   record.get("reason"), record.get("rate"))

    def expires_at(self, expiry_ms: int) -> int:
        return max(self.at_ms, self.due_at_ms or 0) + expiry_ms


def cancel_expiry_seconds(environ: dict[str, str] | None = None) -> float:
    """The expiry of cancels from KQUEUE_CANCEL_EXPIRY (`7d`, `36h`, ...); ValueError if it is not a
    positive duration."""
    text = (os.environ if environ is None else environ).get(CANCEL_EXPIRY_ENV, "").strip()
    if not text:
        return DEFAULT_CANCEL_EXPIRY
    seconds = parse_duration(text)
    if seconds <= 0:
        raise ValueError(f"{CANCEL_EXPIRY_ENV} must be a positive duration, not {text!r}")
    return seconds


def life_started_ms(raw: RawHeaders) -> int | None:
    """When the record's life began: its last replay, else its enqueue (None if it says neither)."""
    values = header_dict(raw)
    for name in (H_REPLAYED_AT, H_ENQUEUED_AT):
        value = values.get(name)
        if value:
            try:
                ms = int(value)
            except ValueError:
                continue
            if ms > 0:
                return ms
    return None


def reaches_life(issued_ms: int, raw: RawHeaders) -> bool:
    """Whether a cancel issued at `issued_ms` reaches a record with these headers (see module doc)."""
    started = life_started_ms(raw)
    return started is None or started <= issued_ms


class TaskRecord(Protocol):
    """What the life check reads of a task record (a worker's WorkItem)."""

    @property
    def quick_id(self) -> str: ...

    @property
    def raw_headers(self) -> RawHeaders: ...


class PendingCancels(set[str]):
    """The task ids with a pending cancel, with when each was issued and when it expires.

    A set, so `if pending` and `task_id in pending` (a cancel is pending for this id, whichever
    life) stay as cheap as they were; `cancel_applies(pending, record)` asks the real question: does
    a pending cancel reach this record's life? Only when the id matches are its headers read, so the
    check stays cheap on the hot path. Written by one thread (the cancel watch), read by any.
    """

    def __init__(self) -> None:
        super().__init__()
        self._issued: dict[str, int] = {}  # task id -> at_ms of its newest cancel
        self._expires: dict[str, int] = {}  # task id -> when that cancel expires (epoch ms)
        self.next_expiry = NEVER  # no sweep finds anything before this

    def applies_to(self, task_id: str, headers: RawHeaders) -> bool:
        """Whether a pending cancel reaches the life of the task with this id and these headers."""
        issued = self._issued.get(task_id)
        return issued is not None and reaches_life(issued, headers)

    def issued_at(self, task_id: str) -> int | None:
        return self._issued.get(task_id)

    def add_cancel(self, command: ControlCommand, expiry_ms: int) -> None:
        """The newest cancel for its target (a compacted topic keeps one per id)."""
        expires = command.expires_at(expiry_ms)
        self._issued[command.target] = command.at_ms  # before the id shows: readers look it up then
        self._expires[command.target] = expires
        self.next_expiry = min(self.next_expiry, expires)
        self.add(command.target)

    def retire(self, task_id: str) -> None:
        """Its tombstone was read (carried out, or expired), or it expired here."""
        self.discard(task_id)
        self._issued.pop(task_id, None)
        self._expires.pop(task_id, None)

    def expire(self, now_ms: int) -> list[str]:
        """Drop the cancels whose expiry has passed; returns their ids (to tombstone)."""
        if now_ms < self.next_expiry:
            return []
        gone = [task_id for task_id, expires in self._expires.items() if expires <= now_ms]
        for task_id in gone:
            self.retire(task_id)
        self.next_expiry = min(self._expires.values(), default=NEVER)
        return gone


def cancel_applies(pending: set[str] | frozenset[str], record: TaskRecord) -> bool:
    """Whether a pending cancel reaches this record: its life, for the worker's PendingCancels; its
    id, for a plain set of ids."""
    if type(pending) is PendingCancels:  # `applies_to`, inlined: this runs per task while any cancel is pending
        issued = pending._issued.get(record.quick_id)
        return issued is not None and reaches_life(issued, record.raw_headers)
    return record.quick_id in pending


# -- pause and resume ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Paused:
    """A paused queue: since when (epoch ms) and why (None: no reason was given)."""

    since: int
    reason: str | None = None


def pause_after(current: Paused | None, command: ControlCommand | None) -> Paused | None:
    """A queue's pause state once the record `command` (None: a tombstone) keyed by it is read: the
    newest record is the state, so a compacted topic gives the same answer as the whole history."""
    if command is None or command.command == "resume":
        return None
    if command.command == "pause":
        return Paused(command.at_ms, command.reason)
    return current  # a cancel whose task id happens to be the queue's name: no pause news


def pause_command(queue: str, current: Paused | None, reason: str | None, now_ms: int) -> ControlCommand:
    """The record that pauses `queue`: a queue paused already stays paused since then, and keeps its
    reason unless a new one is given."""
    if current is None:
        return ControlCommand("pause", queue, now_ms, reason=reason)
    return ControlCommand("pause", queue, current.since, reason=reason if reason is not None else current.reason)


class QueuePauses:
    """The paused queues as read from `_kqueue.control`, and (`limits`) the queues' rate limits.
    Written by one thread (the worker's control watch, or a test), read by any: `version` changes
    with every change of a pause (`limits.version` with a limit's), so the poll loop looks at the
    state only when it moved."""

    def __init__(self) -> None:
        from kqueue.core.queue_limits import QueueLimits

        self._lock = threading.Lock()
        self._paused: dict[str, Paused] = {}
        self.version = 0
        self.limits: QueueLimits = QueueLimits()  # the records keyed `@limit:<queue>` fold there

    def apply(self, key: str, command: ControlCommand | None) -> bool:
        """Fold one record of the control topic that is not a cancel (key, decoded value or None: a
        tombstone); True if a queue's pause or limit changed."""
        if self.limits.owns(key):
            return self.limits.apply(key, command)
        with self._lock:
            current = self._paused.get(key)
            after = pause_after(current, command)
            if after == current:
                return False
            if after is None:
                del self._paused[key]
            else:
                self._paused[key] = after
            self.version += 1
            return True

    def snapshot(self) -> dict[str, Paused]:
        with self._lock:
            return dict(self._paused)

    def get(self, queue: str) -> Paused | None:
        with self._lock:
            return self._paused.get(queue)
