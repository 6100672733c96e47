"""The unit of work the worker moves around: one record, decoded, and what became of it."""

from __future__ import annotations

import traceback
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kqueue.core.errors import Reject, Retry
from kqueue.core.headers import RawHeaders, TaskMeta, header_map
from kqueue.core.ids import derived_task_id
from kqueue.core.names import H_ID

if TYPE_CHECKING:
    from kqueue.sdk.task import TaskDef
    from kqueue.worker.partitions import PartitionOwner


@dataclass(slots=True, eq=False)
class WorkItem:
    """One record. Headers are parsed lazily: the hot path reads only kq-type and kq-content-type."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    raw_headers: RawHeaders
    queue: str
    task: TaskDef | None = None
    payload: Any = None
    owner: PartitionOwner | None = None  # the partition ownership that tracked it
    started_at: float = 0.0  # time.time() when its handler started (set only when middleware listens)
    run_seconds: float | None = None
    result: Any = None  # the handler's return value, kept only for tasks with keep_result
    claim_key: str | None = None  # a unique task's claim, released at its final settlement
    blocks_key: bool = False  # the delivery its key's block waits for (ordered retries, worker/ordering.py)
    held_lane: bool = False  # it failed and its key's later items wait in the executor for the poll loop
    # kq-enqueued-at, read while decoding only when settle hooks listen (the metrics' latency):
    # the header dict is in cache then, not when the task settles. 0: not read, or absent.
    enqueued_at_ms: int = 0
    _headers: dict[str, str] | None = None
    _meta: TaskMeta | None = None
    _quick_id: str | None = None

    @property
    def headers(self) -> dict[str, str]:
        if self._headers is None:
            self._headers = header_map(self.raw_headers)
        return self._headers

    @property
    def meta(self) -> TaskMeta:
        if self._meta is None:
            self._meta = TaskMeta.from_headers(self.headers)
        return self._meta

    @property
    def parsed_meta(self) -> TaskMeta | None:
        """The metadata if something has parsed it already (else None: parsing is not free)."""
        return self._meta

    @property
    def task_id(self) -> str:
        return self.meta.task_id or derived_task_id(self.topic, self.partition, self.offset)

    @property
    def quick_id(self) -> str:
        """`task_id` without parsing every header: kq-id read straight from the raw headers (the
        per-task cancel check runs whenever any cancel is pending, so it must stay cheap)."""
        known = self._quick_id
        if known is not None:
            return known
        found: bytes | str | None = None
        raw = self.raw_headers
        if self._meta is None and raw:
            if type(raw) is dict:  # what the decoder makes (the Mapping ABC check is slow)
                found = raw.get(H_ID)
            else:
                pairs = raw.items() if isinstance(raw, Mapping) else raw
                for name, value in pairs:
                    if name == H_ID:
                        found = value  # the last one wins, as in header_map
        if found is None:
            known = self.task_id
        else:
            known = found.decode("utf-8", "replace") if isinstance(found, bytes) else found
        self._quick_id = known
        return known

    @property
    def lane(self) -> Hashable:
        """Tasks with the same key on the same partition run one at a time, in offset order."""
        if self.key is None:
            return (self.topic, self.partition, self.offset)  # no key, no ordering promise
        return (self.topic, self.partition, self.key)

    @property
    def kind(self) -> str:
        return "async" if self.task is not None and self.task.is_async else "sync"

    @property
    def origin(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"


@dataclass(frozen=True, slots=True)
class Failure:
    error_type: str
    message: str
    trace: str = ""
    reject: bool = False  # dead-letter now, whatever attempts are left
    retryable: bool = True  # False for records that can never run (undecodable, unknown type)
    requested_delay: float | None = None  # from `raise kqueue.Retry(delay=...)`
    cancelled: bool = False  # not run: a cancel for it was pending when its turn came

    @classmethod
    def from_exception(cls, exc: BaseException) -> Failure:
        trace = "".join(traceback.format_exception(exc))
        delay = exc.delay if isinstance(exc, Retry) else None
        return cls(type(exc).__name__, str(exc) or type(exc).__name__, trace, isinstance(exc, Reject),
                   True, delay)

    @classmethod
    def cancel(cls, message: str = "cancelled before it started") -> Failure:
        return cls("Cancelled", message, retryable=False, cancelled=True)

    @classmethod
    def unrunnable(cls, error_type: str, message: str) -> Failure:
        return cls(error_type, message, retryable=False)


# What the executor reports: the item and None for success, or the Failure.
Outcome = tuple[WorkItem, Failure | None]
