"""A queue's rate limit for all its task types together: the command written to `_kqueue.control`
(key `@limit:<queue>`, core/queue_limits.py), and the limits read back from it.

Workers of the queue hear it within a second or two and retune (worker/ratelimits.py); a worker
that starts later reads it before its first task. Setting the limit a queue has already keeps its
`since`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kqueue.control.pauses import check_queue, read_controls, read_state, since_text
from kqueue.core import names
from kqueue.core.queue_limits import QueueLimit, limit_after, limit_command, limit_key
from kqueue.core.ratelimit import Rate, parse_rate

if TYPE_CHECKING:
    from kqueue.sdk.app import App

CLEAR_WORDS = frozenset({"off", "none", "clear"})


@dataclass(frozen=True)
class QueueLimitState:
    """A queue's limit: `limit` is None while it has none."""

    queue: str
    limit: QueueLimit | None

    def as_json(self) -> dict[str, Any]:
        """{"queue", "rate": "500/s" or None, "per_second": float or None, "since": epoch ms or None}."""
        limit = self.limit
        return {"queue": self.queue, **(limit_json(limit) or {"rate": None, "per_second": None, "since": None})}

    def __str__(self) -> str:
        if self.limit is None:
            return f"queue {self.queue} has no queue-wide rate limit (its task types' own limits still hold)"
        return (f"queue {self.queue} is limited to {self.limit.rate} for all its task types together "
                f"(since {since_text(self.limit.since)})")


def limit_json(limit: QueueLimit | None) -> dict[str, Any] | None:
    """How queue figures show it: {"rate": "500/s", "per_second": 500.0, "since": epoch ms}, or None."""
    return None if limit is None else limit.as_json()


def parse_queue_rate(text: str | None) -> Rate | None:
    """A limit as given by a user: `N/s`, `N/m`, `N/h` (N > 0), or None / `off` to clear it.
    ValueError in one line naming the value."""
    if text is None or (isinstance(text, str) and text.strip().lower() in CLEAR_WORDS):
        return None
    try:
        return parse_rate(text)
    except ValueError:
        raise ValueError(f"rate {text!r} is not a rate: give N/s, N/m or N/h with N > 0 (e.g. '500/s'), "
                         "or 'off' to clear the limit") from None


def read_limits(bootstrap: str, prefix: str = "", timeout: float = 10.0) -> dict[str, QueueLimit]:
    """The queues' limits now: `_kqueue.control` read to its end (TopicReadError if it cannot be)."""
    return read_controls(bootstrap, prefix, timeout).limits.snapshot()


def change_limit(app: App, queue: str, rate: str | Rate | None) -> QueueLimitState:
    """Write the limit (None: clear it) of `queue` and wait for Kafka to have it; the state it leaves.

    ValueError for a rate that is not one, or a queue that is neither one of the app's nor on the
    cluster; DeliveryError when Kafka cannot be reached, its state cannot be read, or the record is
    refused."""
    parsed = rate if isinstance(rate, Rate) else parse_queue_rate(rate)
    timeout = app.enqueue_timeout
    created = check_queue(app, queue, f"to {'limit' if parsed else 'clear the limit of'} queue {queue!r}")
    current = read_state(app, queue, created).limits.get(queue)
    command = limit_command(queue, parsed, int(time.time() * 1000))
    app.producer.produce(names.control_topic(app.topic_prefix), command.encode(), limit_key(queue).encode(), [])
    app.flush(timeout)
    return QueueLimitState(queue, limit_after(current, command))
