"""Dead-letter operations for the CLI, the SDK and the REST API: list, show, replay, purge.

A dead letter is pending while the task's latest status event is the `failed` event written with
it (same task id, same time as its kq-failed-at). Replay puts the record back on Q (attempt reset,
key and id kept) and records a `queued` event in the same transaction, so replaying the same dead
letters twice enqueues them once.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from confluent_kafka import Message, Producer, TopicPartition

from kqueue.core import names
from kqueue.core.headers import header_map, now_ms, replay_headers
from kqueue.core.status import TaskEvent
from kqueue.transport.config import producer_config
from kqueue.transport.inspect import read_records, topic_depths


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
        try:
            return int(self.headers.get(names.H_ATTEMPT, "1"))
        except ValueError:
            return 1

    @property
    def failed_at(self) -> int:
        try:
            return int(self.headers.get(names.H_FAILED_AT, "0"))
        except ValueError:
            return 0

    @property
    def error(self) -> str:
        kind = self.headers.get(names.H_ERROR_TYPE, "")
        message = self.headers.get(names.H_ERROR_MESSAGE, "")
        return f"{kind}: {message}" if kind else message

    @classmethod
    def from_message(cls, msg: Message) -> DeadLetter:
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


# -- acting ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReplayReport:
    replayed: list[DeadLetter]
    skipped: list[DeadLetter]  # selected but already replayed (or superseded by a newer dead letter)


def replay(bootstrap: str, queue: str, ids: Iterable[str] = (), task_type: str | None = None,
           everything: bool = False, dry_run: bool = False, prefix: str = "") -> ReplayReport:
    letters = dead_letters(bootstrap, queue, prefix)
    chosen = select(letters, ids, task_type, everything)
    pending_ids = {letter.position for letter in pending_dead_letters(bootstrap, queue, prefix)}
    todo = [letter for letter in chosen if letter.position in pending_ids]
    skipped = [letter for letter in chosen if letter.position not in pending_ids]
    if dry_run or not todo:
        return ReplayReport(todo, skipped)
    producer = Producer(producer_config(bootstrap, **{"transactional.id": f"kqueue-replay-{uuid.uuid4().hex[:12]}"}))
    producer.init_transactions(30)
    producer.begin_transaction()
    target = names.main_topic(queue, prefix)
    at = now_ms()
    for letter in todo:
        producer.produce(target, value=letter.value, key=letter.key, partition=letter.partition,
                         headers=replay_headers(letter.headers, letter.position))  # type: ignore[arg-type]
        event = TaskEvent(letter.task_id, queue, letter.task_type, "queued", 1, at)
        producer.produce(names.status_topic(prefix), value=event.encode(), key=letter.task_id.encode())
    producer.commit_transaction(30)
    return ReplayReport(todo, skipped)


def purge(bootstrap: str, queue: str, before_ms: int | None = None, prefix: str = "") -> int:
    """Delete dead letters (all, or those appended before `before_ms`); returns how many were removed."""
    from confluent_kafka import Consumer

    from kqueue.transport.admin import make_admin

    topic = names.dlq_topic(queue, prefix)
    depths = topic_depths(bootstrap, [topic])
    cut: dict[int, int] = {d.partition: d.high for d in depths}
    if before_ms is not None:
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"_kqueue.purge.{uuid.uuid4().hex[:8]}"})
        try:
            found = consumer.offsets_for_times([TopicPartition(topic, d.partition, before_ms) for d in depths],
                                               timeout=10)
        finally:
            consumer.close()
        cut = {tp.partition: (tp.offset if tp.offset >= 0 else cut[tp.partition]) for tp in found}
    targets = [TopicPartition(topic, p, offset) for p, offset in cut.items()]
    removed = sum(1 for letter in dead_letters(bootstrap, queue, prefix) if letter.offset < cut[letter.partition])
    if removed:
        admin = make_admin(bootstrap)
        for future in admin.delete_records(targets, operation_timeout=30).values():
            future.result(timeout=30)
    return removed
