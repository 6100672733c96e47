"""Dead-letter operations for the CLI, the SDK and the REST API: list, show, replay, purge.

A dead letter is pending while the task's latest status event is the `failed` event written with
it (same task id, same time as its kq-failed-at). Replay puts the record back on Q (attempt reset,
key and id kept) and records a `queued` event in the same transaction, so replaying the same dead
letters twice enqueues them once. Replays of one queue share a transactional.id and fence it before
reading, so two concurrent runs cannot both replay a letter: the fenced one fails and writes nothing.

A dead letter *by reference* (a record too large to copy, see core/oversize.py) has no value and a
`kq-payload-at` header: its payload and headers are read from that position to show or replay it.
If retention has removed that record, the letter cannot be replayed and is reported as missing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from kqueue.core import names
from kqueue.core.errors import KqueueError
from kqueue.core.headers import header_map, int_value, now_ms, replay_headers
from kqueue.core.records import OutRecord, RecordKind, status_record
from kqueue.core.status import TaskEvent
from kqueue.transport.admin import delete_records
from kqueue.transport.consumer import Record
from kqueue.transport.fenced import Fenced, FencedWriter
from kqueue.transport.inspect import offsets_for_time, read_record_at, read_records, topic_depths


@dataclass(frozen=True)
class DeadLetter:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, str]

    @property
    def position(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"

    @property
    def task_id(self) -> str:
        return self.headers.get(names.H_ID, self.position)

    @property
    def task_type(self) -> str:
        return self.headers.get(names.H_TYPE, "")

    @property
    def attempts(self) -> int:
        return int_value(self.headers, names.H_ATTEMPT, 1)

    @property
    def enqueued_at(self) -> int:
        """When its task was first enqueued (kq-enqueued-at, kept through retries); 0 if unknown."""
        return int_value(self.headers, names.H_ENQUEUED_AT, 0)

    @property
    def origin_offset(self) -> int:
        """The offset of its first delivery (kq-origin: topic/partition/offset); -1 if unknown."""
        try:
            return int(self.headers.get(names.H_ORIGIN, "").rsplit("/", 1)[1])
        except (IndexError, ValueError):
            return -1

    @property
    def failed_at(self) -> int:
        return int_value(self.headers, names.H_FAILED_AT, 0)

    @property
    def error(self) -> str:
        kind = self.headers.get(names.H_ERROR_TYPE, "")
        message = self.headers.get(names.H_ERROR_MESSAGE, "")
        return f"{kind}: {message}" if kind else message

    @property
    def payload_at(self) -> tuple[str, int, int] | None:
        """Where the payload is, for a dead letter by reference (else None: it is the letter's value)."""
        where = self.headers.get(names.H_PAYLOAD_AT)
        if where is None:
            return None
        topic, partition, offset = where.rsplit("/", 2)
        return topic, int(partition), int(offset)

    @classmethod
    def from_message(cls, msg: Record) -> DeadLetter:
        return cls(msg.topic() or "", msg.partition() or 0, msg.offset() or 0, msg.key(), msg.value(),
                   header_map(msg.headers()))


# -- pure decisions ----------------------------------------------------------------------------------
def is_pending(letter: DeadLetter, latest: TaskEvent | None) -> bool:
    """Not replayed yet: no newer event for the task than the `failed` one written with this letter."""
    if latest is None:
        return True  # no status (expired, or written before status events existed): still replayable
    return latest.status == "failed" and latest.at_ms == letter.failed_at


def select(letters: Iterable[DeadLetter], ids: Iterable[str] = (), task_type: str | None = None,
           everything: bool = False) -> list[DeadLetter]:
    wanted = set(ids)
    return [
        letter for letter in letters
        if everything or letter.task_id in wanted or (task_type is not None and letter.task_type == task_type)
    ]


def in_enqueue_order(letters: Iterable[DeadLetter]) -> list[DeadLetter]:
    """Letters in the order their tasks were first enqueued: by kq-enqueued-at (milliseconds, so a
    burst shares one), then by the offset of their first delivery (kq-origin; a key's tasks share its
    partition), then by where they were dead-lettered. Retries through the tiers can dead-letter a
    key's first task after its later ones; replayed in this order, each key's tasks go back as they came."""
    return sorted(letters, key=lambda letter: (letter.enqueued_at or letter.failed_at, letter.origin_offset,
                                               letter.partition, letter.offset))


# -- reading -----------------------------------------------------------------------------------------
def dead_letters(bootstrap: str, queue: str, prefix: str = "") -> list[DeadLetter]:
    return [DeadLetter.from_message(m) for m in read_records(bootstrap, [names.dlq_topic(queue, prefix)])]


def latest_events(bootstrap: str, prefix: str = "", task_ids: set[str] | None = None) -> dict[str, TaskEvent]:
    """The newest status event per task id (the status topic is compacted, so this is its state)."""
    events: dict[str, TaskEvent] = {}
    for msg in read_records(bootstrap, [names.status_topic(prefix)]):
        key = (msg.key() or b"").decode()
        if task_ids is not None and key not in task_ids:
            continue
        value = msg.value()
        if value is None:
            events.pop(key, None)
            continue
        event = TaskEvent.decode(value)
        current = events.get(key)
        if current is None or event.at_ms >= current.at_ms:
            events[key] = event
    return events


def pending_dead_letters(bootstrap: str, queue: str, prefix: str = "") -> list[DeadLetter]:
    letters = dead_letters(bootstrap, queue, prefix)
    events = latest_events(bootstrap, prefix, {letter.task_id for letter in letters})
    latest_letter: dict[str, DeadLetter] = {}
    for letter in letters:  # a task dead-lettered twice: only its newest letter can be pending
        latest_letter[letter.task_id] = letter
    return [letter for letter in letters
            if latest_letter[letter.task_id] is letter and is_pending(letter, events.get(letter.task_id))]


@dataclass(frozen=True)
class Payload:
    """What a replay puts back: the letter's own record, or the one a reference points at."""

    value: bytes | None
    key: bytes | None
    headers: dict[str, str]


def payload_of(bootstrap: str, letter: DeadLetter) -> Payload | None:
    """The letter's payload; for a reference, read from its position (None if that record is gone)."""
    where = letter.payload_at
    if where is None:
        return Payload(letter.value, letter.key, letter.headers)
    original = read_record_at(bootstrap, *where)
    if original is None:
        return None
    # The original's own headers (user headers too) under the letter's: the id, attempts and error.
    headers = {**header_map(original.headers()), **letter.headers}
    headers.pop(names.H_PAYLOAD_AT)
    return Payload(original.value(), original.key(), headers)


# -- acting ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReplayReport:
    replayed: list[DeadLetter]
    skipped: list[DeadLetter]  # selected but already replayed (or superseded by a newer dead letter)
    missing: list[DeadLetter] = dataclasses.field(default_factory=list)  # by reference, payload gone


class ReplayConflict(KqueueError):
    """Another replay of the same queue fenced this run before it committed; this run wrote nothing."""


def replay_transactional_id(queue: str, prefix: str = "") -> str:
    """One transactional.id per queue, so concurrent replays of a queue fence each other (a lock)."""
    return f"kqueue-replay-{names.main_topic(queue, prefix)}"


def _plan(bootstrap: str, queue: str, ids: Iterable[str], task_type: str | None, everything: bool,
          prefix: str) -> ReplayReport:
    chosen = select(dead_letters(bootstrap, queue, prefix), ids, task_type, everything)
    pending_ids = {letter.position for letter in pending_dead_letters(bootstrap, queue, prefix)}
    return ReplayReport([letter for letter in chosen if letter.position in pending_ids],
                        [letter for letter in chosen if letter.position not in pending_ids])


def replay(bootstrap: str, queue: str, ids: Iterable[str] = (), task_type: str | None = None,
           everything: bool = False, dry_run: bool = False, prefix: str = "", *, ordered: bool = False,
           on_selected: Callable[[list[DeadLetter]], None] | None = None) -> ReplayReport:
    """Replay the selected pending dead letters (`ordered`: in the order their tasks were first
    enqueued, so a key's tasks go back in their original order); raises ReplayConflict if a concurrent
    replay of the queue fenced this run. `on_selected` (a test seam) sees the letters to replay before
    any is written."""
    if dry_run:  # no transactional producer: a dry run must not fence a real one
        report = _plan(bootstrap, queue, ids, task_type, everything, prefix)
        if on_selected is not None:
            on_selected(report.replayed)
        return report
    if not ids and task_type is None and not everything:
        return ReplayReport([], [])
    if not everything and not select(dead_letters(bootstrap, queue, prefix), ids, task_type):
        return ReplayReport([], [])  # nothing matches: no need to fence anyone
    # Fence before reading: a run still open is aborted (its commit fails), and a run that committed
    # earlier has its `queued` events visible to the read_committed read below.
    writer = FencedWriter(bootstrap, replay_transactional_id(queue, prefix))
    report = _plan(bootstrap, queue, ids, task_type, everything, prefix)
    if on_selected is not None:
        on_selected(report.replayed)
    if not report.replayed:
        return report
    target = names.main_topic(queue, prefix)
    at = now_ms()
    records: list[OutRecord] = []
    replayed: list[DeadLetter] = []
    missing: list[DeadLetter] = []
    for letter in in_enqueue_order(report.replayed) if ordered else report.replayed:
        payload = payload_of(bootstrap, letter)
        if payload is None:
            missing.append(letter)
            continue
        replayed.append(letter)
        records.append(OutRecord(RecordKind.DELIVER, target, payload.value, payload.key,
                                 replay_headers(payload.headers, letter.position), letter.partition))
        event = TaskEvent(letter.task_id, queue, letter.task_type, "queued", 1, at)
        records.append(status_record(event, prefix))
    report = ReplayReport(replayed, report.skipped, missing)
    if not records:
        return report
    try:
        writer.commit(records)
    except Fenced:
        raise ReplayConflict(f"another replay of queue {queue!r} ran at the same time; this run replayed "
                             "nothing (run it again)") from None
    return report


def purge(bootstrap: str, queue: str, before_ms: int | None = None, prefix: str = "") -> int:
    """Delete dead letters (all, or those appended before `before_ms`); returns how many were removed."""
    topic = names.dlq_topic(queue, prefix)
    depths = topic_depths(bootstrap, [topic])
    cut: dict[int, int] = {d.partition: d.high for d in depths}
    if before_ms is not None:
        found = offsets_for_time(bootstrap, topic, list(cut), before_ms)
        cut = {p: (offset if offset >= 0 else cut[p]) for p, offset in found.items()}
    removed = sum(1 for letter in dead_letters(bootstrap, queue, prefix) if letter.offset < cut[letter.partition])
    if removed:
        delete_records(bootstrap, topic, cut)
    return removed
