"""Task metadata <-> Kafka headers (UTF-8 strings). Pure; see DESIGN.md section 2."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from kqueue.core import names

HeaderList = list[tuple[str, bytes]]


def now_ms() -> int:
    return int(time.time() * 1000)


RawHeaders = Iterable[tuple[str, bytes | str | None]] | Mapping[str, bytes | str | None] | None


def header_map(raw: RawHeaders) -> dict[str, str]:
    """Kafka headers as a dict of strings; the last value of a repeated header wins."""
    out: dict[str, str] = {}
    if not raw:
        return out
    pairs = raw.items() if isinstance(raw, Mapping) else raw
    for name, value in pairs:
        if value is None:
            continue
        out[name] = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    return out


_ID, _ATTEMPT, _ENQUEUED_AT = names.H_ID, names.H_ATTEMPT, names.H_ENQUEUED_AT


def quick_fields(raw: RawHeaders) -> tuple[str | None, int, int | None]:
    """(kq-id, kq-attempt, kq-enqueued-at), decoding nothing else: a settled task's event needs
    these three, and parsing every header would cost more than the rest of its settling."""
    values = header_dict(raw)
    task_id = values.get(_ID)
    if isinstance(task_id, bytes):
        task_id = task_id.decode("utf-8", "replace")
    return task_id, max(1, _int_or(values.get(_ATTEMPT), 1)), enqueued_at_ms(values)


def enqueued_at_ms(raw: RawHeaders) -> int | None:
    """kq-enqueued-at straight from the raw headers (None if absent or not a positive number):
    the latency metric reads it for every completed task."""
    value = (raw if type(raw) is dict else header_dict(raw)).get(_ENQUEUED_AT)
    if not value:
        return None
    try:
        ms = int(value)
    except ValueError:
        return None
    return ms if ms > 0 else None


def header_dict(raw: RawHeaders) -> Mapping[str, bytes | str | None]:
    """The raw headers by name (the last of a repeated one wins). The worker keeps them as a dict
    already; a Kafka header list becomes one in C."""
    if type(raw) is dict:  # the Mapping ABC check is slow: the common case first
        return raw
    if not raw:
        return {}
    return raw if isinstance(raw, Mapping) else dict(raw)


def _int_or(text: str | bytes | None, default: int) -> int:
    if text is None:
        return default
    try:
        return int(text)  # int() reads ASCII digits from bytes as well
    except ValueError:
        return default


def to_header_list(values: Mapping[str, str | int | None]) -> HeaderList:
    return [(k, str(v).encode()) for k, v in values.items() if v is not None]


def int_value(values: Mapping[str, str], name: str, default: int) -> int:
    """An integer from parsed headers, or `default` when it is missing or not a number."""
    text = values.get(name)
    if text is None:
        return default
    try:
        return int(text)
    except ValueError:
        return default


@dataclass(frozen=True, slots=True)
class TaskMeta:
    """What kqueue knows about a task from its headers."""

    task_id: str | None
    task_type: str | None
    attempt: int
    max_attempts: int | None
    enqueued_at: int | None
    not_before: int | None
    priority: str | None
    idempotency_key: str | None
    content_type: str | None
    origin: str | None

    @classmethod
    def from_headers(cls, values: Mapping[str, str]) -> TaskMeta:
        max_attempts = int_value(values, names.H_MAX_ATTEMPTS, 0)
        enqueued = int_value(values, names.H_ENQUEUED_AT, 0)
        not_before = int_value(values, names.H_NOT_BEFORE, 0)
        return cls(
            task_id=values.get(names.H_ID),
            task_type=values.get(names.H_TYPE),
            attempt=max(1, int_value(values, names.H_ATTEMPT, 1)),
            max_attempts=max_attempts or None,
            enqueued_at=enqueued or None,
            not_before=not_before or None,
            priority=values.get(names.H_PRIORITY),
            idempotency_key=values.get(names.H_IDEMPOTENCY_KEY),
            content_type=values.get(names.H_CONTENT_TYPE),
            origin=values.get(names.H_ORIGIN),
        )


def fixed_task_headers(task_type: str, content_type: str, max_attempts: int, priority: str) -> HeaderList:
    """The headers every new task of one type and priority shares (built once, not per task)."""
    return to_header_list({
        names.H_TYPE: task_type,
        names.H_ATTEMPT: 1,
        names.H_MAX_ATTEMPTS: max_attempts,
        names.H_CONTENT_TYPE: content_type,
        names.H_PRIORITY: priority,
    })


def new_task_headers(
    task_id: str,
    task_type: str,
    content_type: str,
    max_attempts: int,
    priority: str = "normal",
    idempotency_key: str | None = None,
    enqueued_at: int | None = None,
    extra: Mapping[str, str] | None = None,
    fixed: HeaderList | None = None,
) -> HeaderList:
    """Headers of a new task; `fixed` (from fixed_task_headers) saves rebuilding the shared part."""
    headers = [
        (names.H_ID, task_id.encode()),
        (names.H_ENQUEUED_AT, str(enqueued_at if enqueued_at is not None else now_ms()).encode()),
    ]
    headers += fixed if fixed is not None else fixed_task_headers(task_type, content_type, max_attempts, priority)
    if idempotency_key is not None:
        headers.append((names.H_IDEMPOTENCY_KEY, idempotency_key.encode()))
    if extra:
        headers.extend((k, v.encode()) for k, v in extra.items())
    return headers


TRACE_LIMIT = 4000  # bytes of traceback kept in kq-error-trace; headers travel with every fetch


def _tail_bytes(text: str, limit: int) -> str:
    """The end of `text` within `limit` UTF-8 bytes, never splitting a character."""
    data = text.encode()
    return text if len(data) <= limit else data[-limit:].decode("utf-8", "ignore")


def _with_error(
    original: Mapping[str, str], task_id: str, origin: str, error_type: str, message: str, trace: str,
    failed_at: int | None,
) -> dict[str, str | int | None]:
    """The original headers plus the task id, the first-delivery origin (kept if set) and the error."""
    values: dict[str, str | int | None] = dict(original)
    values[names.H_ID] = task_id
    values.setdefault(names.H_ORIGIN, origin)
    values[names.H_ERROR_TYPE] = error_type
    values[names.H_ERROR_MESSAGE] = message[:1000]
    values[names.H_ERROR_TRACE] = _tail_bytes(trace, TRACE_LIMIT) if trace else None
    values[names.H_FAILED_AT] = failed_at if failed_at is not None else now_ms()
    return values


def dead_letter_headers(
    original: Mapping[str, str],
    task_id: str,
    origin: str,
    error_type: str,
    message: str,
    trace: str = "",
    failed_at: int | None = None,
) -> HeaderList:
    """Headers of a dead letter: the original ones plus the error, the id and the origin."""
    return to_header_list(_with_error(original, task_id, origin, error_type, message, trace, failed_at))


def retry_headers(
    original: Mapping[str, str],
    task_id: str,
    origin: str,
    next_attempt: int,
    max_attempts: int,
    not_before: int,
    target: str,
    error_type: str,
    message: str,
    trace: str = "",
    failed_at: int | None = None,
) -> HeaderList:
    """Headers of a retry waiting in a delay tier: the next attempt, when, where to, and the last error."""
    values = _with_error(original, task_id, origin, error_type, message, trace, failed_at)
    values[names.H_ATTEMPT] = next_attempt
    values[names.H_MAX_ATTEMPTS] = max_attempts
    values[names.H_NOT_BEFORE] = not_before
    values[names.H_TARGET] = target
    return to_header_list(values)


def delivered_headers(original: Mapping[str, str]) -> HeaderList:
    """Headers of a due record the router delivers to its target: the scheduling headers are spent."""
    return to_header_list({k: v for k, v in original.items() if k not in (names.H_NOT_BEFORE, names.H_TARGET)})


def replay_headers(original: Mapping[str, str], dead_letter_position: str) -> HeaderList:
    """A dead letter put back on its queue: a fresh first attempt, same id and key, errors dropped."""
    dropped = {names.H_ERROR_TYPE, names.H_ERROR_MESSAGE, names.H_ERROR_TRACE, names.H_FAILED_AT,
               names.H_NOT_BEFORE, names.H_TARGET, names.H_PAYLOAD_AT}
    values: dict[str, str | int | None] = {k: v for k, v in original.items() if k not in dropped}
    values[names.H_ATTEMPT] = 1
    values[names.H_REPLAY_OF] = dead_letter_position
    values[names.H_REPLAYED_AT] = now_ms()  # a new life: a cancel issued before the replay does not reach it
    return to_header_list(values)
