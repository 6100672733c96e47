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
  outcome is decided (it is durable with the next commit), `on_commit` once a commit made records and
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

from kqueue.core.headers import HeaderList, RawHeaders
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


@dataclass(slots=True)
class SettleEvent:
    """Treat as read-only. (Not frozen: one is built per settled task, and a frozen dataclass with
    this many fields costs four times as much to build.)"""

    outcome: Settlement
    task_id: str
    task_type: str | None
    queue: str
    topic: str
    partition: int
    offset: int
    key: bytes | None
    attempt: int
    error_type: str | None
    error_message: str | None
    enqueued_at_ms: int | None  # when it was first enqueued (kq-enqueued-at)
    started_at: float | None  # epoch seconds its handler started (None: never ran, e.g. undecodable)
    run_seconds: float | None
    settled_at_ms: int
    destination: str | None = None  # the topic it was routed to (a delay tier, the DLQ, a target)
    tier: str | None = None  # the delay tier of that topic, if it is one
    raw_headers: RawHeaders = None  # the record's headers as Kafka gave them; header_map() parses them


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

    def on_commit(self, event: CommitEvent) -> None:
        """Offsets and routed records were committed."""

    def on_partitions(self, event: PartitionEvent) -> None:
        """Partitions were assigned, revoked or lost."""

    def on_tick(self, event: TickEvent) -> None:
        """The poll loop turned (about once a second): what the worker holds now."""


def _overridden(middleware: Sequence[Middleware], name: str) -> list[Callable[..., None]]:
    return [getattr(m, name) for m in middleware if getattr(type(m), name) is not getattr(Middleware, name)]


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
        self.settle = _overridden(middleware, "on_settle")
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
