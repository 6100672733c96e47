"""What a runner (a sync thread or a coroutine) holds, how many idle threads ready work wakes, and the
async runners' event loop. Split from the executor (worker/executor.py).
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections import deque

from kqueue.core.lanes import Run
from kqueue.worker.work import WorkItem


def threads_to_wake(wanted: int, busy: int, stalled: int, idle: int, overdue: bool) -> int:
    """Idle threads to wake for ready sync work: enough that `wanted` threads serve the queue, not
    counting the `stalled` ones (in a slow handler), and one at least if the work waited too long."""
    short = wanted - (busy - stalled)
    return max(0, min(idle, max(short, 1 if overdue else 0)))


class Hand:
    """The runs a thread or coroutine took together. The ones not started yet stay in `pending`,
    where the ticker may take them back (deque pops are atomic: each run goes to one taker)."""

    __slots__ = ("pending", "run_started", "sync", "taken_at")

    def __init__(self, sync: bool) -> None:
        self.sync = sync
        self.pending: deque[Run[WorkItem]] = deque()
        self.taken_at = 0.0
        self.run_started = math.inf  # when its current key's run started (inf: none started yet)


def start_event_loop(name: str) -> asyncio.AbstractEventLoop:
    """A new event loop running on a daemon thread of its own (the executor's async handlers)."""
    loop = asyncio.new_event_loop()
    started = threading.Event()

    def main() -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(started.set)
        loop.run_forever()

    threading.Thread(target=main, name=name, daemon=True).start()
    started.wait()
    return loop
