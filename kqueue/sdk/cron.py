"""`@app.cron(...)`: a periodic schedule for a registered task, checked when the decorator runs.

Everything a schedule could get wrong (the expression, the time zone, catch_up, the payload
against the task's schema, a name used twice) is refused here with one line naming the value,
so a bad schedule fails the import, never its first tick. The scheduler (kqueue/cron/) fires
what is registered here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kqueue.core import names
from kqueue.core.headers import HeaderList, new_task_headers, now_ms
from kqueue.cron.schedule import Schedule
from kqueue.sdk.middleware import EnqueueEvent
from kqueue.sdk.task import TaskDef

if TYPE_CHECKING:
    from kqueue.sdk.app import App

DEFAULT_TZ = "UTC"
DEFAULT_CATCH_UP = True  # like Celery beat and Kubernetes CronJobs: a tick missed in an outage runs once


@dataclass(frozen=True)
class CronEntry:
    """One schedule: which task it enqueues, with what payload, when."""

    name: str
    task: TaskDef
    schedule: Schedule
    payload: bytes  # encoded once, at registration
    catch_up: bool
    priority: str = "normal"

    @property
    def queue(self) -> str:
        return self.task.queue

    def task_id(self, tick: int) -> str:
        """The tick's task id: the same for every scheduler, so a tick has one identity."""
        return f"cron:{self.name}:{tick}"

    def record(self, tick: int, prefix: str) -> tuple[str, bytes | None, bytes | None, HeaderList]:
        """The tick's task record (topic, key, value, headers), as `enqueue` would write it.

        The key is the schedule's name: its ticks share a partition, so they run one at a time and in
        order (a slow tick delays the next one rather than overlapping it)."""
        task = self.task
        topic = names.lane_topic(task.queue, self.priority, prefix)
        task_id = self.task_id(tick)
        key = self.name.encode()
        headers = new_task_headers(task_id, task.name, task.content_type, task.max_attempts, self.priority,
                                   None, now_ms())
        hooks = task.app.hooks.enqueue
        if hooks:  # tracing and the like see a cron tick as any enqueue
            event = EnqueueEvent(task_id, task.name, task.queue, topic, key, headers)
            for hook in hooks:
                hook(event)
        return topic, key, self.payload, headers


def register_cron(
    app: App, expression: str, *, tz: str = DEFAULT_TZ, payload: Any = None, catch_up: Any = DEFAULT_CATCH_UP,
    name: str | None = None, priority: str = "normal",
) -> Callable[[TaskDef], TaskDef]:
    """Check the schedule now (ValueError naming a bad value) and return the decorator adding it."""
    schedule = Schedule(expression, tz)
    if not isinstance(catch_up, bool):
        raise ValueError(f"catch_up must be True (fire the latest missed tick once) or False (skip missed "
                         f"ticks), not {catch_up!r}")
    if priority not in names.PRIORITIES:
        raise ValueError(f"cron priority must be one of {', '.join(names.PRIORITIES)}, not {priority!r}")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise ValueError(f"cron name must be a non-empty string, not {name!r}")

    def add(task: TaskDef) -> TaskDef:
        if not isinstance(task, TaskDef):
            raise TypeError(f"@app.cron goes above @app.task (it schedules a registered task), got "
                            f"{getattr(task, '__qualname__', task)!r}")
        if task.app is not app:
            raise ValueError(f"task {task.name!r} belongs to another App")
        entry_name = name or f"{task.queue}.{task.name}"
        if entry_name in app.cron_entries:
            raise ValueError(f"cron schedule {entry_name!r} is already registered: give this one name=")
        try:
            encoded = task.encode({} if payload is None else payload)
        except (TypeError, ValueError) as exc:  # not JSON, or not the task's Avro schema
            raise ValueError(f"cron payload for task {task.name!r} does not encode: {exc}") from None
        app.cron_entries[entry_name] = CronEntry(entry_name, task, schedule, encoded, catch_up, priority)
        return task

    return add
