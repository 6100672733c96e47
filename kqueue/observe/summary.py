"""The worker's INFO line: every so often (10 s by default), what it settled since the last line.

A line per completed task costs a no-op worker most of its throughput (each line is ~10 us, a
no-op task ~10 us too), so completions are counted here instead, a batch at a time (the length of
the batch, no event built), and written as one line:

    settled in the last 10.0s: 48,213 completed (4,821.3/s), 12 retried, 1 dead-lettered; lag 350

Failures and dead letters still get their own WARNING line each (kqueue/observe/logs.py). A window
opens at the first settlement after a quiet spell and is written once it is `every` seconds old
(checked on the poll loop's tick, about once a second) or when the worker stops; a quiet worker
writes nothing. The lag is the task lanes' consumer-group lag as the lag probe last read it, when
the probe runs (with a metrics port).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from kqueue.core.records import Settlement
from kqueue.sdk.middleware import Middleware, SettleEvent, TickEvent
from kqueue.worker.events import Completions

SUMMARY_LOGGER = "kqueue.summary"
SUMMARY_EVERY = 10.0  # seconds between lines (--summary-interval)
log = logging.getLogger(SUMMARY_LOGGER)


@dataclass(slots=True)
class Tally:
    completed: int = 0
    retried: int = 0
    dead_lettered: int = 0
    cancelled: int = 0
    delivered: int = 0  # delay-tier records moved on to their target (the router's work)
    parked: int = 0  # ordered keys' later tasks parked behind a retry

    def count(self, outcome: Settlement) -> None:
        if outcome is Settlement.COMPLETED:
            self.completed += 1
        elif outcome is Settlement.RETRIED:
            self.retried += 1
        elif outcome is Settlement.DEAD_LETTERED:
            self.dead_lettered += 1
        elif outcome is Settlement.CANCELLED:
            self.cancelled += 1
        elif outcome is Settlement.DELIVERED:
            self.delivered += 1
        elif outcome is Settlement.PARKED:
            self.parked += 1

    def __bool__(self) -> bool:
        return any((self.completed, self.retried, self.dead_lettered, self.cancelled, self.delivered, self.parked))


def summary_line(tally: Tally, seconds: float, lag: int | None) -> tuple[str, dict[str, Any]]:
    """The line's text and its fields (keys of the JSON format). Failures are always named, even at
    0; cancels and deliveries from delay tiers only when there were some."""
    rate = tally.completed / seconds if seconds > 0 else 0.0
    parts = [f"{tally.completed:,} completed ({rate:,.1f}/s)", f"{tally.retried:,} retried",
             f"{tally.dead_lettered:,} dead-lettered"]
    if tally.cancelled:
        parts.append(f"{tally.cancelled:,} cancelled")
    if tally.delivered:
        parts.append(f"{tally.delivered:,} delivered from delay tiers")
    if tally.parked:
        parts.append(f"{tally.parked:,} parked behind a retry")
    text = f"settled in the last {seconds:.1f}s: {', '.join(parts)}"
    fields: dict[str, Any] = {"window_s": round(seconds, 3), "completed": tally.completed,
                              "completed_per_s": round(rate, 1), "retried": tally.retried,
                              "dead_lettered": tally.dead_lettered, "cancelled": tally.cancelled,
                              "delivered": tally.delivered, "parked": tally.parked}
    if lag is not None:
        text += f"; lag {lag:,}"
        fields["lag"] = lag
    return text, fields


class SummaryLog(Middleware):
    """Counts settlements and writes `summary_line` at INFO every `every` seconds of activity."""

    def __init__(self, every: float = SUMMARY_EVERY, lag: Callable[[], int | None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._every = every
        self._lag = lag
        self._clock = clock
        self._tally = Tally()
        self._opened: float | None = None  # when the current window's first settlement came

    def on_settle_many(self, events: Sequence[SettleEvent]) -> None:
        if self._opened is None:
            self._opened = self._clock()
        if type(events) is Completions:  # a batch of completions: counted without building its events
            self._tally.completed += len(events)
            return
        for event in events:
            self._tally.count(event.outcome)

    def on_tick(self, event: TickEvent) -> None:
        if self._opened is not None and self._clock() - self._opened >= self._every:
            self.flush()

    def flush(self) -> None:
        """Write the open window's line now (the worker stops) and start afresh."""
        if self._opened is None:
            return
        seconds = self._clock() - self._opened
        tally, self._tally, self._opened = self._tally, Tally(), None
        if tally and log.isEnabledFor(logging.INFO):
            text, fields = summary_line(tally, seconds, self._lag() if self._lag is not None else None)
            log.info("%s", text, extra=fields)


def lane_lag(by_key: dict[tuple[str, str, str], int]) -> int:
    """The lag of the task lanes (high, normal, low) summed; delay tiers hold retries not yet due."""
    return sum(value for (_, lane, _), value in by_key.items() if lane)
