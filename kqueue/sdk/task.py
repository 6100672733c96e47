"""A registered task type: its handler, its queue and how it is enqueued."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from kqueue.core import names
from kqueue.core.codec import AvroSchema, encode_avro, encode_json
from kqueue.core.dedup import DEFAULT_IDEMPOTENCY_WINDOW, idempotent_task_id, payload_unique_key
from kqueue.core.durations import to_seconds
from kqueue.core.headers import HeaderList, fixed_task_headers, new_task_headers, now_ms
from kqueue.core.ids import new_task_id
from kqueue.core.priority import lane_of
from kqueue.core.ratelimit import Rate
from kqueue.core.retry import RetryPolicy, ms_not_shorter
from kqueue.sdk.middleware import EnqueueEvent

if TYPE_CHECKING:
    from kqueue.sdk.app import App

Handler = Callable[..., Any]
Delay = timedelta | float | int | str


def schedule_ms(now: int, delay: Delay | None, run_at: datetime | None) -> int | None:
    """The epoch-ms a task may start, or None to run as soon as possible."""
    if delay is not None and run_at is not None:
        raise ValueError("give delay or run_at, not both")
    if run_at is not None:
        if run_at.tzinfo is None:
            raise ValueError("run_at must be timezone-aware (e.g. datetime.now(timezone.utc))")
        at = int(run_at.timestamp() * 1000)
    elif delay is not None:
        seconds = to_seconds(delay)
        if seconds < 0:
            raise ValueError("delay cannot be negative")
        at = now + ms_not_shorter(seconds)
    else:
        return None
    return at if at > now else None


def _wants_context(fn: Handler) -> bool:
    params = [
        p for p in inspect.signature(fn).parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    if len(params) not in (1, 2):
        raise TypeError(f"task handler {fn.__qualname__} must take (payload) or (payload, ctx)")
    return len(params) == 2


@dataclass
class TaskDef:
    app: App
    fn: Handler
    queue: str
    name: str
    max_attempts: int
    timeout: float | None
    schema: AvroSchema | None
    backoff: RetryPolicy | None = None
    keep_result: bool = False  # the handler's return value goes to the status view (JSON, capped)
    unique_for: float | None = None  # seconds: no second task of the same unique key while one is unfinished
    idempotency_window: float = DEFAULT_IDEMPOTENCY_WINDOW  # seconds an idempotency key is remembered
    interruptible: bool = False  # async only: a cancel while it runs cancels the handler's coroutine
    rate_limit: Rate | None = None  # starts per second for the whole consumer group (core/ratelimit.py)
    # A retry keeps its key's order: the key's later tasks wait for it (core/ordering.py); "follow":
    # those waiting follow it to the DLQ when it is dead-lettered.
    ordered: bool | Literal["follow"] = False

    def __post_init__(self) -> None:
        self.is_async = inspect.iscoroutinefunction(self.fn)
        self.wants_ctx = _wants_context(self.fn)
        self.content_type = names.CONTENT_AVRO if self.schema is not None else names.CONTENT_JSON
        self._fixed_headers: dict[str, HeaderList] = {}

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Calling the task runs the handler here and now, like a plain function."""
        return self.fn(*args, **kwargs)

    def encode(self, payload: Any) -> bytes:
        if self.schema is not None:
            return encode_avro(self.schema, payload)
        return encode_json(payload)

    @property
    def retry_policy(self) -> RetryPolicy:
        return self.backoff or self.app.retry_policy

    def _record(
        self, value: bytes, key: str | bytes | None, priority: str | int, idempotency_key: str | None,
        headers: Mapping[str, str] | None, delay: Delay | None = None, run_at: datetime | None = None,
        unique_key: str | None = None,
    ) -> tuple[str, str, bytes, bytes | None, list[tuple[str, bytes]]]:
        priority = lane_of(priority)  # a lane name or 0-9 (9 most urgent): the lane (core/priority.py)
        target = names.lane_topic(self.queue, priority, self.app.topic_prefix)
        if idempotency_key is not None:
            if not idempotency_key:
                raise ValueError("idempotency_key cannot be empty")
            # Every enqueue of this key gets the same id, and by default the same partition, whose
            # owner runs the first and settles the others (core/dedup.py).
            task_id = idempotent_task_id(self.queue, self.name, idempotency_key)
            if key is None:
                key = idempotency_key
        else:
            task_id = new_task_id()
        if unique_key is not None and self.unique_for is None:
            raise ValueError(f"unique_key needs a task registered with unique_for= (task {self.name!r})")
        raw_key = key.encode() if isinstance(key, str) else key
        now = now_ms()
        if self.unique_for is not None:
            unique = unique_key if unique_key is not None else payload_unique_key(value)
            extra = {**(headers or {}), names.H_UNIQUE_KEY: unique, names.H_UNIQUE_FOR: f"{self.unique_for:g}"}
            headers = extra
            if key is None:
                raw_key = unique.encode()  # duplicates meet on one partition
        fixed = self._fixed_headers.get(priority)
        if fixed is None:
            fixed = self._fixed_headers[priority] = fixed_task_headers(
                self.name, self.content_type, self.max_attempts, priority)
        record_headers = new_task_headers(task_id, self.name, self.content_type, self.max_attempts, priority,
                                          idempotency_key, now, extra=headers, fixed=fixed)
        not_before = schedule_ms(now, delay, run_at)
        topic = target
        if not_before is not None:
            # Scheduled: wait in the delay tier that fits, the router delivers it to `target` when due.
            tier = self.app.tiers.for_wait((not_before - now) / 1000)
            record_headers += [(names.H_NOT_BEFORE, str(not_before).encode()), (names.H_TARGET, target.encode())]
            topic = names.delay_topic(self.queue, tier, self.app.topic_prefix)
        hooks = self.app.hooks.enqueue
        if hooks:
            event = EnqueueEvent(task_id, self.name, self.queue, topic, raw_key, record_headers)
            for hook in hooks:  # an error here is the caller's: the task is not enqueued
                hook(event)
        return task_id, topic, value, raw_key, record_headers

    def enqueue(
        self,
        payload: Any,
        *,
        key: str | bytes | None = None,
        priority: str | int = "normal",
        idempotency_key: str | None = None,
        headers: Mapping[str, str] | None = None,
        delay: Delay | None = None,
        run_at: datetime | None = None,
        unique_key: str | None = None,
    ) -> str:
        """Queue one task; returns its id at once. Delivery failures surface on `app.flush()`.

        `delay` (seconds, timedelta or "90s") or `run_at` (an aware datetime) schedule it: it will not
        start before then. `idempotency_key`: every enqueue of the key within the type's window gets
        the same id and the task runs once. `unique_key` (types with unique_for=; default: a hash of
        the payload): a duplicate enqueued while one is unfinished is settled `cancelled`.
        """
        return self.send(self.encode(payload), key=key, priority=priority, idempotency_key=idempotency_key,
                         headers=headers, delay=delay, run_at=run_at, unique_key=unique_key)

    def send(
        self,
        value: bytes,
        *,
        key: str | bytes | None = None,
        priority: str | int = "normal",
        idempotency_key: str | None = None,
        headers: Mapping[str, str] | None = None,
        delay: Delay | None = None,
        run_at: datetime | None = None,
        unique_key: str | None = None,
    ) -> str:
        """Queue one task whose payload is already encoded (see `encode`)."""
        task_id, topic, value, raw_key, record_headers = self._record(
            value, key, priority, idempotency_key, headers, delay, run_at, unique_key
        )
        self.app.ensure_queue(self.queue)
        self.app.producer.produce(topic, value, raw_key, record_headers)
        return task_id

    async def enqueue_async(
        self,
        payload: Any,
        *,
        key: str | bytes | None = None,
        priority: str | int = "normal",
        idempotency_key: str | None = None,
        headers: Mapping[str, str] | None = None,
        delay: Delay | None = None,
        run_at: datetime | None = None,
        unique_key: str | None = None,
    ) -> str:
        """Queue one task and wait (without blocking the event loop) until Kafka has it.

        A full send buffer is waited out for up to the app's enqueue_timeout, then DeliveryError. A
        caller cancelled while it waits (a timeout, a TaskGroup, a shutdown) harms no other enqueue;
        a record already handed to Kafka is still delivered (the task may run), and a failure to
        deliver it is logged and surfaces on `app.flush()`.
        """
        task_id, topic, value, raw_key, record_headers = self._record(
            self.encode(payload), key, priority, idempotency_key, headers, delay, run_at, unique_key
        )
        if not self.app.queue_ensured(self.queue):  # the first enqueue creates the topics (blocking calls)
            await asyncio.to_thread(self.app.ensure_queue, self.queue)
        await self.app.producer.produce_acknowledged(topic, value, raw_key, record_headers)
        return task_id
