"""The middleware seam: hooks around a task's life, for metrics, tracing, status, cancel, rate limits.

Subclass `Middleware`, override the hooks you need and pass instances to `App(middleware=[...])`.
Hooks nobody overrides are never called, so an app without middleware pays nothing.

Where and in what order hooks run:
- `on_enqueue`: in the producing process, before the record is produced; may add headers. Raising
  stops the enqueue: the caller gets the exception.
- `before_run`: on the handler's thread (sync) or event loop (async), in list order, right before the
  handler. Raising fails the attempt like the handler raising would (`kqueue.Retry`, `kqueue.Reject`
  work too); the handler then does not run.
- `after_run`: same place, in reverse list order, after the handler (or a failed `before_run`), with
  the error or None and the seconds it took. Raising is logged and changes nothing.
- `on_settle`, `on_commit`, `on_partitions`, `on_tick`: on the poll loop. `on_settle` when a task's
  outcome is decided (it is durable with the next commit); `on_settle_many` gets the outcomes decided
  together (a batch's completions) and by default hands each to `on_settle`: override it instead when
  a per-event call costs too much, `on_commit` once a commit made records and
  offsets durable, `on_partitions` when partitions are assigned, revoked or lost, `on_tick` about
  once a second while the loop turns (also while it drains) with what the worker holds. Raising is
  logged and changes nothing.
A hook must not block (the poll loop and the handlers wait on it), must not touch the worker's
Kafka clients, and must not keep references to payloads past the call.

Headers travel on: `ctx.headers` is the task's own header map, and what `after_run` sets there
(e.g. a tracer's `tracestate`) is written into the task's retry or dead letter. kq-* headers are
kqueue's and are overwritten.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from kqueue.core.headers import HeaderList, RawHeaders, enqueued_at_ms, quick_fields
from kqueue.core.ids import derived_task_id
from kqueue.core.records import TP, Settlement
from kqueue.sdk.context import TaskContext

log = logging.getLogger("kqueue.middleware")


@dataclass(slots=True)
class EnqueueEvent:
    task_id: str
    task_type: str
    queue: str
    topic: str
    key: bytes | None
    headers: HeaderList  # the record's headers; a hook may append to them


# Passed for task_id, attempt and enqueued_at_ms to read them from raw_headers on first use.
UNREAD: Any = object()


class SettleEvent:
    """A task's outcome, decided. Treat as read-only.

    A plain slotted class, built on the poll loop: for a failure when it is routed, for a completion
    only when a hook reads it from its batch (`on_settle_many`). The fields that come from headers
    (task_id, attempt, enqueued_at_ms) are read from `raw_headers` only when a hook asks: most hooks
    need one of them or none."""

    __slots__ = ("_attempt", "_enqueued_at_ms", "_task_id", "destination", "error_message", "error_type", "key",
                 "offset", "outcome", "partition", "queue", "raw_headers", "run_seconds", "settled_at_ms",
                 "started_at", "task_type", "tier", "topic")

    def __init__(self, outcome: Settlement, task_id: str, task_type: str | None, queue: str, topic: str,
                 partition: int, offset: int, key: bytes | None, attempt: int, error_type: str | None,
                 error_message: str | None, enqueued_at_ms: int | None, started_at: float | None,
                 run_seconds: float | None, settled_at_ms: int, destination: str | None = None,
                 tier: str | None = None, raw_headers: RawHeaders = None) -> None:
        self.outcome = outcome
        self._task_id = task_id
        self.task_type = task_type
        self.queue = queue
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.key = key
        self._attempt = attempt
        self.error_type = error_type
        self.error_message = error_message
        self._enqueued_at_ms = enqueued_at_ms  # when it was first enqueued (kq-enqueued-at)
        self.started_at = started_at  # epoch seconds its handler started (None: never ran, e.g. undecodable)
        self.run_seconds = run_seconds
        self.settled_at_ms = settled_at_ms
        self.destination = destination  # the topic it was routed to (a delay tier, the DLQ, a target)
        self.tier = tier  # the delay tier of that topic, if it is one
        self.raw_headers = raw_headers  # the record's headers as Kafka gave them; header_map() parses them

    def _read_headers(self) -> None:
        task_id, attempt, enqueued_at = quick_fields(self.raw_headers)
        if self._task_id is UNREAD:
            self._task_id = task_id or derived_task_id(self.topic, self.partition, self.offset)
        if self._attempt is UNREAD:
            self._attempt = attempt
        if self._enqueued_at_ms is UNREAD:
            self._enqueued_at_ms = enqueued_at

    @property
    def task_id(self) -> str:
        if self._task_id is UNREAD:
            self._read_headers()
        return self._task_id

    @property
    def attempt(self) -> int:
        if self._attempt is UNREAD:
            self._read_headers()
        return self._attempt

    @property
    def enqueued_at_ms(self) -> int | None:
        if self._enqueued_at_ms is UNREAD:  # alone: metrics read this one on every task
            self._enqueued_at_ms = enqueued_at_ms(self.raw_headers)
        return self._enqueued_at_ms

    def __repr__(self) -> str:
        return (f"SettleEvent({self.outcome.value} {self.task_id} {self.task_type} {self.topic}/{self.partition}/"
                f"{self.offset} attempt {self.attempt}{' -> ' + self.destination if self.destination else ''})")


@dataclass(frozen=True, slots=True)
class CommitEvent:
    offsets: dict[TP, int]
    records: int  # routed records written with these offsets
    seconds: float


@dataclass(frozen=True, slots=True)
class PartitionEvent:
    kind: Literal["assigned", "revoked", "lost"]
    partitions: list[TP]


@dataclass(frozen=True, slots=True)
class TickEvent:
    worker_id: str  # the instance id, else host:pid
    group: str
    concurrency: int
    busy: int  # handler slots working now (threads and async tasks)
    unsettled: int  # fetched tasks not settled yet
    partitions: tuple[TP, ...]  # owned now (task lanes and delay tiers)
    member_id: str  # the group's id for this member ("" until it has joined)
    commits_failing_for: float  # seconds commits have not gone through: failing, or one stuck in flight (0: fine)
    stopping: bool


class Middleware:
    def on_enqueue(self, event: EnqueueEvent) -> None:
        """A task is about to be produced."""

    def before_run(self, ctx: TaskContext) -> None:
        """A handler is about to run."""

    def after_run(self, ctx: TaskContext, error: BaseException | None, seconds: float) -> None:
        """A handler finished (error is None on success)."""

    def on_settle(self, event: SettleEvent) -> None:
        """A task's outcome was decided: completed, retried, dead-lettered, or a tier record moved on."""

    def on_settle_many(self, events: Sequence[SettleEvent]) -> None:
        """Outcomes decided together, in order. By default each goes to `on_settle` (one that raises
        is logged and the rest still go)."""
        on_settle = self.on_settle
        for event in events:
            try:
                on_settle(event)
            except Exception:
                log.exception("middleware hook %s failed", getattr(on_settle, "__qualname__", on_settle))

    def on_commit(self, event: CommitEvent) -> None:
        """Offsets and routed records were committed."""

    def on_partitions(self, event: PartitionEvent) -> None:
        """Partitions were assigned, revoked or lost."""

    def on_tick(self, event: TickEvent) -> None:
        """The poll loop turned (about once a second): what the worker holds now."""


def _overrides(m: Middleware, name: str) -> bool:
    return getattr(type(m), name) is not getattr(Middleware, name)


def _overridden(middleware: Sequence[Middleware], name: str) -> list[Callable[..., None]]:
    return [getattr(m, name) for m in middleware if _overrides(m, name)]


class Hooks:
    """A middleware list resolved once into the hooks that are really overridden."""

    def __init__(self, middleware: Sequence[Middleware] = ()) -> None:
        for m in middleware:
            if not isinstance(m, Middleware):
                raise TypeError(f"middleware must subclass kqueue.Middleware, not {type(m).__name__}")
        self.middleware = list(middleware)
        self.enqueue = _overridden(middleware, "on_enqueue")
        self.before_run = _overridden(middleware, "before_run")
        self.after_run = list(reversed(_overridden(middleware, "after_run")))
        # Each takes a list of events: one hook call per batch of completions, not per task.
        self.settle = [m.on_settle_many for m in middleware
                       if _overrides(m, "on_settle") or _overrides(m, "on_settle_many")]
        self.commit = _overridden(middleware, "on_commit")
        self.partitions = _overridden(middleware, "on_partitions")
        self.tick = _overridden(middleware, "on_tick")
        self.around_run = bool(self.before_run or self.after_run)

    @staticmethod
    def emit(hooks: list[Callable[..., None]], *args: Any) -> None:
        """Call observing hooks; one that raises is logged and the rest still run."""
        for hook in hooks:
            try:
                hook(*args)
            except Exception:
                log.exception("middleware hook %s failed", getattr(hook, "__qualname__", hook))
