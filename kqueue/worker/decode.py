"""A Kafka record becomes a WorkItem with its handler and payload, or a Failure saying why not."""

from __future__ import annotations

import json
from io import BytesIO
from typing import Any

from fastavro import schemaless_reader

from kqueue.core import names
from kqueue.core.codec import SOE_HEADER_LEN, decode_payload
from kqueue.core.errors import DecodeError
from kqueue.sdk.app import App
from kqueue.sdk.task import TaskDef
from kqueue.transport.consumer import Record
from kqueue.worker.work import Failure, WorkItem


class Decoder:
    """Per-worker decoding with the lookups that repeat for every record cached."""

    def __init__(self, app: App, read_enqueued_at: bool = False) -> None:
        self.app = app
        self._read_enqueued_at = read_enqueued_at
        self._queues: dict[str, str] = {}
        self._tasks: dict[tuple[str, bytes | None], TaskDef | None] = {}
        # (topic, kq-type) -> how its records decode when they are as the SDK writes them (`_Fast`).
        self._fast: dict[tuple[str, bytes | None], _Fast | None] = {}

    def _queue(self, topic: str) -> str:
        queue = self._queues.get(topic)
        if queue is None:
            queue = self._queues[topic] = names.queue_of_topic(topic, self.app.topic_prefix)
        return queue

    def _task(self, queue: str, task_type: bytes | None) -> TaskDef | None:
        cache_key = (queue, task_type)
        if cache_key not in self._tasks:
            type_name = task_type.decode("utf-8", "replace") if task_type is not None else None
            self._tasks[cache_key] = self.app.task_for(queue, type_name)
        return self._tasks[cache_key]

    def decode(self, msg: Record) -> tuple[WorkItem, Failure | None]:
        try:
            return self._decode(msg)
        except Exception as exc:  # a record must never stop the worker: it becomes a dead letter
            item = WorkItem(msg.topic() or "", msg.partition() or 0, msg.offset() or 0, msg.key(), msg.value(),
                            {}, self._queue(msg.topic() or ""))
            return item, Failure.unrunnable("DecodeError", f"cannot read the record: {type(exc).__name__}: {exc}")

    def _decode(self, msg: Record) -> tuple[WorkItem, Failure | None]:
        # A consumed (non-error) record always has topic, partition and offset (the stubs allow None).
        topic: str = msg.topic()  # type: ignore[assignment]
        partition: int = msg.partition()  # type: ignore[assignment]
        offset: int = msg.offset()  # type: ignore[assignment]
        raw = msg.headers()
        # dict() of the header tuples runs in C; only two headers are read on the hot path.
        headers: dict[str, bytes | None] = dict(raw) if raw else {}  # type: ignore[arg-type]
        task_type = headers.get(names.H_TYPE)
        content_type = headers.get(names.H_CONTENT_TYPE)
        queue = self._queue(topic)
        value = msg.value()
        item = WorkItem(topic, partition, offset, msg.key(), value, headers, queue)
        if self._read_enqueued_at:
            item.enqueued_at_ms = _enqueued_at_ms(headers)
        task = self._task(queue, task_type)
        if task is None:
            known = ", ".join(sorted(n for q, n in self.app.tasks if q == queue)) or "none"
            what = f"task type {item.meta.task_type!r}" if task_type is not None else "a record without kq-type"
            return item, Failure.unrunnable("UnknownTaskType",
                                            f"{what} has no handler on queue {queue!r} (known: {known})")
        item.task = task
        ctype = content_type.decode("utf-8", "replace") if content_type is not None else None
        try:
            item.payload = decode_payload(value, ctype, task.schema, self.app.schemas)
        except DecodeError as exc:
            return item, Failure.unrunnable(exc.error_type, str(exc))
        return item, None

    def decode_batch(self, messages: list[Record]) -> list[tuple[WorkItem, Failure | None]]:
        """Every record as an item, with the Failure that keeps it from running (None if it can run).

        Records as the SDK writes them (a known type; Avro single-object encoded with the task's own
        schema, or JSON) decode here with the lookups done once per topic and type. Anything else, and
        anything that raises, goes through `decode`, which says what is wrong: the fast path only
        ever yields what `decode` would have."""
        out: list[tuple[WorkItem, Failure | None]] = []
        append = out.append
        fast_of, decode, read_enqueued = self._fast, self.decode, self._read_enqueued_at
        for msg in messages:
            raw = msg.headers()
            headers: dict[str, bytes | None] = dict(raw) if raw else {}  # type: ignore[arg-type]
            topic: str = msg.topic()  # type: ignore[assignment]
            task_type = headers.get(names.H_TYPE)
            fast = fast_of.get((topic, task_type))
            if fast is None and (topic, task_type) not in fast_of:
                fast = fast_of[(topic, task_type)] = self._fast_route(topic, task_type)
            content_type = headers.get(names.H_CONTENT_TYPE)
            value = msg.value()
            if fast is None or value is None or (content_type is not None and content_type not in _FAST_TYPES):
                append(decode(msg))
                continue
            try:
                if content_type == _JSON:
                    payload = fast.json(value)
                elif fast.parsed is not None and value[:SOE_HEADER_LEN] == fast.prefix:
                    payload = schemaless_reader(BytesIO(value[SOE_HEADER_LEN:]), fast.parsed, None)
                else:
                    append(decode(msg))
                    continue
            except Exception:  # `decode` says what is wrong with it
                append(decode(msg))
                continue
            item = WorkItem(topic, msg.partition(), msg.offset(), msg.key(), value,  # type: ignore[arg-type]
                            headers, fast.queue, fast.task, payload)
            if read_enqueued:
                item.enqueued_at_ms = _enqueued_at_ms(headers)
            append((item, None))
        return out

    def _fast_route(self, topic: str, task_type: bytes | None) -> _Fast | None:
        queue = self._queue(topic)
        task = self._task(queue, task_type)
        if task is None:
            return None
        schema = task.schema
        return _Fast(queue, task, schema.prefix if schema is not None else b"",
                     schema.parsed if schema is not None else None)


def _enqueued_at_ms(headers: dict[str, bytes | None]) -> int:
    """kq-enqueued-at (read while decoding only when settle hooks listen); 0: absent or not a number
    (no latency for this task; the tally skips one that is not positive)."""
    enqueued = headers.get(names.H_ENQUEUED_AT)
    if not enqueued:
        return 0
    try:
        return int(enqueued)
    except ValueError:
        return 0


class _Fast:
    """What a (topic, kq-type) pair's well-formed records need to decode: no lookups per record."""

    __slots__ = ("parsed", "prefix", "queue", "task")

    def __init__(self, queue: str, task: TaskDef, prefix: bytes, parsed: Any) -> None:
        self.queue = queue
        self.task = task
        self.prefix = prefix  # the task schema's single-object header: magic and fingerprint
        self.parsed = parsed  # None: a JSON task (an Avro record goes through `decode`)

    @staticmethod
    def json(value: bytes) -> Any:
        return json.loads(value)


_JSON = names.CONTENT_JSON.encode()
_FAST_TYPES = (_JSON, names.CONTENT_AVRO.encode())
