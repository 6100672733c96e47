"""The unit of work the worker moves around: one record, decoded, and what became of it."""

from __future__ import annotations

import traceback
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kqueue.core.headers import TaskMeta
from kqueue.core.watermark import PartitionWatermark

if TYPE_CHECKING:
    from kqueue.sdk.task import TaskDef


@dataclass(slots=True, eq=False)
class WorkItem:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, str]
    meta: TaskMeta
    task_id: str
    queue: str
    task: TaskDef | None = None
    payload: Any = None
    watermark: PartitionWatermark | None = None

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
    reject: bool = False
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_exception(cls, exc: BaseException, reject: bool = False) -> Failure:
        trace = "".join(traceback.format_exception(exc))
        return cls(type(exc).__name__, str(exc) or type(exc).__name__, trace, reject)


# What the executor reports: the item and None for success, or the Failure.
Outcome = tuple[WorkItem, Failure | None]
