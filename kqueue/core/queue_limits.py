"""A queue-wide rate limit in `_kqueue.control` (`kqueue queue limit Q 500/s`). Pure.

Key: `@limit:` + the queue's name. Pauses are keyed by the bare queue name and cancels by task id (a
UUID), and neither `@` nor `:` may appear in a Kafka topic name, so a queue's limit never replaces
its pause (in a compacted topic one key holds one state) nor a task's cancel. Value: a
`ControlCommand` with the verb `limit`, the queue as `target`, and `rate` ("500/s"; null clears the
limit). The newest record of the key is the queue's limit, so compaction keeps exactly what matters;
a tombstone of the key clears it too.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from kqueue.core.control import ControlCommand
from kqueue.core.ratelimit import Rate, parse_rate

LIMIT_KEY_PREFIX = "@limit:"


def limit_key(queue: str) -> str:
    return LIMIT_KEY_PREFIX + queue


def queue_of_limit_key(key: str) -> str | None:
    """The queue a control record's key limits (None: the key is not a limit's)."""
    return key[len(LIMIT_KEY_PREFIX):] if key.startswith(LIMIT_KEY_PREFIX) else None


@dataclass(frozen=True)
class QueueLimit:
    """A queue's limit for all its task types together, and since when (epoch ms) it is set."""

    rate: Rate
    since: int

    def as_json(self) -> dict[str, object]:
        return {"rate": str(self.rate), "per_second": self.rate.per_second, "since": self.since}


def limit_command(queue: str, rate: Rate | None, now_ms: int) -> ControlCommand:
    """The record that sets (or, with None, clears) the limit of `queue`."""
    return ControlCommand("limit", queue, now_ms, rate=str(rate) if rate is not None else None)


def limit_after(current: QueueLimit | None, command: ControlCommand | None) -> QueueLimit | None:
    """A queue's limit once the record `command` (None: a tombstone) keyed by its limit key is read."""
    if command is None:
        return None
    if command.command != "limit":
        return current  # a cancel whose task id happens to look like a limit's key: no limit news
    if command.rate is None:
        return None
    try:
        rate = parse_rate(command.rate)
    except ValueError:
        return current  # written by a client that does not check: the limit stays as it was
    if current is not None and current.rate == rate:
        return current  # the same limit again: it is set since the first time
    return QueueLimit(rate, command.at_ms)


class QueueLimits:
    """The queues' limits as read from `_kqueue.control`. Written by one thread (the worker's control
    watch, or a reader of the topic), read by any: `version` changes with every change."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._limits: dict[str, QueueLimit] = {}
        self.version = 0

    @staticmethod
    def owns(key: str) -> bool:
        return key.startswith(LIMIT_KEY_PREFIX)

    def apply(self, key: str, command: ControlCommand | None) -> bool:
        """Fold one record keyed by a limit key; True if the queue's limit changed."""
        queue = queue_of_limit_key(key)
        if queue is None:
            return False
        with self._lock:
            current = self._limits.get(queue)
            after = limit_after(current, command)
            if after == current:
                return False
            if after is None:
                del self._limits[queue]
            else:
                self._limits[queue] = after
            self.version += 1
            return True

    def snapshot(self) -> dict[str, QueueLimit]:
        with self._lock:
            return dict(self._limits)

    def get(self, queue: str) -> QueueLimit | None:
        with self._lock:
            return self._limits.get(queue)
