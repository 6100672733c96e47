"""Routed records that Kafka would refuse as too large: trim their error headers, else dead-letter
them by reference. Pure.

A failed task's retry or dead letter is its payload plus error headers, so a task near the size
limit can fail in a way that cannot be written, and a batch with a record Kafka refuses can never
commit: the queue would stop. So the error headers shrink first (the trace goes, then the message
is cut), and a record that still does not fit becomes a dead letter *by reference*: no value, the
task's own kq-* headers, the error, and `kq-payload-at` naming the record that still holds the
payload (readable until that topic's retention removes it). `kqueue dlq replay` reads it from there.

A new task over the limit is refused before it is produced (`refuse_oversize`): a RecordTooLarge
that names the limit, as is Kafka's own refusal for a topic whose max.message.bytes is smaller.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from kqueue.core import names
from kqueue.core.errors import RecordTooLarge
from kqueue.core.headers import HeaderList
from kqueue.core.records import OutRecord, RecordKind

# What the worker's producers accept per record (librdkafka message.max.bytes, set to this in
# transport/config.py); a topic's max.message.bytes (1048588 by default) is checked by the broker.
MAX_RECORD_BYTES = 1_000_000
# librdkafka counts key + value + serialized headers (each name and value with varint lengths);
# the rest is margin for the record's own framing.
_PER_HEADER = 10
_PER_RECORD = 128
KEY_KEPT_UP_TO = 1024  # a reference keeps the key (for per-key views) only when it is this small
_MESSAGE_IN_REFERENCE = 500

# Headers a reference keeps: enough to list, show, count and replay the task.
_KEPT_BY_REFERENCE = frozenset({
    names.H_ID, names.H_TYPE, names.H_ATTEMPT, names.H_MAX_ATTEMPTS, names.H_ENQUEUED_AT, names.H_PRIORITY,
    names.H_IDEMPOTENCY_KEY, names.H_CONTENT_TYPE, names.H_ORIGIN, names.H_ERROR_TYPE, names.H_ERROR_MESSAGE,
    names.H_FAILED_AT, names.H_REPLAY_OF, names.H_TRACEPARENT, names.H_TRACESTATE,
})


Headers = Iterable[tuple[str, bytes | str | None]]


def record_size(value: bytes | None, key: bytes | None, headers: Headers | None) -> int:
    """An upper estimate of the size Kafka checks against its limits (before compression)."""
    header_bytes = sum(len(name) + len(v.encode() if isinstance(v, str) else v or b"") + _PER_HEADER
                       for name, v in headers or ())
    return len(value or b"") + len(key or b"") + header_bytes + _PER_RECORD


def record_bytes(record: OutRecord) -> int:
    return record_size(record.value, record.key, record.headers)


def refuse_oversize(topic: str, value: bytes | None, key: bytes | None, headers: Headers | None,
                    limit: int) -> None:
    """Raise RecordTooLarge if the record would be over `limit` bytes (by record_size's estimate)."""
    size = record_size(value, key, headers)
    if size > limit:
        raise RecordTooLarge(f"{topic}: the record is {size} bytes (payload, key and headers), over the "
                             f"{limit}-byte limit per record", size, limit)


def refused_as_too_large(topic: str, size: int) -> RecordTooLarge:
    """Kafka's own refusal of a record for its size: the topic's max.message.bytes is below it."""
    return RecordTooLarge(f"{topic}: Kafka refused the record ({size} bytes) as larger than the topic's "
                          "max.message.bytes", size)


def _cut(text: bytes, limit: int) -> bytes:
    """At most `limit` bytes of UTF-8 `text`, never splitting a character."""
    return text if len(text) <= limit else text[:max(0, limit)].decode("utf-8", "ignore").encode()


def trimmed(record: OutRecord, limit: int) -> OutRecord | None:
    """`record` within `limit` bytes, dropping its error trace and then cutting its error message;
    None if even that is not enough."""
    excess = record_bytes(record) - limit
    if excess <= 0:
        return record
    headers: HeaderList = []
    for name, value in record.headers:
        if name == names.H_ERROR_TRACE and excess > 0:
            excess -= len(name) + len(value) + _PER_HEADER
            continue
        headers.append((name, value))
    if excess > 0:
        for i, (name, value) in enumerate(headers):
            if name == names.H_ERROR_MESSAGE:
                kept = _cut(value, len(value) - excess)
                excess -= len(value) - len(kept)
                headers[i] = (name, kept)
    return dataclasses.replace(record, headers=headers) if excess <= 0 else None


def dead_letter_topic_of(topic: str) -> str:
    """The DLQ of the queue a kqueue topic belongs to (works with a topic prefix too)."""
    return names.dlq_topic(names.queue_of_topic(topic))


def reference_letter(record: OutRecord, payload_at: str, error_type: str | None = None,
                     message: str | None = None, failed_at: int | None = None) -> OutRecord:
    """A dead letter standing for `record`, whose payload stays at `payload_at` (topic/partition/offset).

    The error headers are the record's own unless given (a retry that could not be written states
    why it is dead-lettered instead)."""
    values = {name: value for name, value in record.headers if name in _KEPT_BY_REFERENCE}
    if error_type is not None:
        values[names.H_ERROR_TYPE] = error_type.encode()
    if message is not None:
        values[names.H_ERROR_MESSAGE] = message.encode()
    if failed_at is not None:
        values[names.H_FAILED_AT] = str(failed_at).encode()
    if names.H_ERROR_MESSAGE in values:
        values[names.H_ERROR_MESSAGE] = _cut(values[names.H_ERROR_MESSAGE], _MESSAGE_IN_REFERENCE)
    values[names.H_PAYLOAD_AT] = payload_at.encode()
    key = record.key if record.key is not None and len(record.key) <= KEY_KEPT_UP_TO else None
    return OutRecord(RecordKind.DEAD_LETTER, dead_letter_topic_of(record.topic), None, key, list(values.items()),
                     record.partition)


def too_large_reason(record: OutRecord, limit: int | None) -> str:
    """Why a record of this kind is dead-lettered by reference instead of written."""
    size = record_bytes(record)
    where = f"over the {limit}-byte limit" if limit is not None else f"refused by {record.topic} as too large"
    return f"its {record.kind.value} record ({size} bytes) is {where}"


def is_reference(record: OutRecord) -> bool:
    return any(name == names.H_PAYLOAD_AT for name, _ in record.headers)
