"""A status lookup that misses waits until the view has read as far as the topics went when it
asked (so a task enqueued anywhere before the GET is never called unknown while the view is a
little behind). The wait happens on the event loop, not on a thread, and is shared:

- one question to Kafka at a time for where the topics end; every waiter that arrived before it
  was asked shares its answer (one that arrived while it was in flight waits for the next one,
  since the ends it needs were taken after it arrived);
- one read of the view's positions per poll, for every waiter at once;
- past `max_waiters` a miss is turned away at once rather than queued.

A flood of GETs for unknown ids therefore costs Kafka one offsets request at a time and the API no
threads, and a lookup of a known task is answered meanwhile.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from kqueue.core.records import TP

Offsets = dict[TP, int]
MAX_WAITERS = 1000
POLL_SECONDS = 0.02


class ViewBehind(RuntimeError):
    """The view has not caught up with the topics in time (or Kafka cannot say where they end)."""


def caught_up(read: Offsets, ends: Offsets) -> bool:
    """Every partition with records has been read to at least its end."""
    return all(read.get(tp, 0) >= end for tp, end in ends.items() if end > 0)


class CatchUp:
    def __init__(self, topic_ends: Callable[[], Offsets], read_positions: Callable[[], Offsets],
                 max_wait: float, max_waiters: int = MAX_WAITERS, poll: float = POLL_SECONDS) -> None:
        self._topic_ends = topic_ends  # blocking (asks Kafka): run on a thread
        self._read_positions = read_positions  # quick (the view's sqlite): run on the loop
        self.max_wait = max_wait
        self._max_waiters = max_waiters
        self._poll = poll
        self.waiting = 0
        self.questions = 0  # times Kafka was asked where the topics end (tests count them)
        self._question: asyncio.Future[Offsets] | None = None
        self._asked_at = 0.0
        self._targets: list[tuple[Offsets, asyncio.Future[None], float]] = []  # ends, reached, since
        self._poller: asyncio.Task[None] | None = None
        self._reached_ends: Offsets | None = None  # the latest question's ends the view has read past

    async def wait(self) -> None:
        """Return once the view has read up to ends taken after this call began; ViewBehind if that
        takes longer than `max_wait`, Kafka cannot be asked, or too many are waiting already."""
        if self.waiting >= self._max_waiters:
            raise ViewBehind("too many status lookups are waiting for the view; ask again shortly")
        self.waiting += 1
        arrived = time.monotonic()
        try:
            async with asyncio.timeout(self.max_wait):
                ends = await self._ends_after(arrived)
                await self._reached(ends)
        except TimeoutError:
            raise ViewBehind("the status view is catching up with Kafka; ask again shortly") from None
        finally:
            self.waiting -= 1

    async def _ends_after(self, arrived: float) -> Offsets:
        while True:
            question = self._question
            if question is not None and self._asked_at >= arrived:
                return await asyncio.shield(question)
            if question is None or question.done():
                self._asked_at = time.monotonic()
                self.questions += 1
                self._question = asyncio.ensure_future(asyncio.to_thread(self._topic_ends))
                continue
            await asyncio.wait([question])  # asked before we arrived: wait for it, then ask anew

    async def _reached(self, ends: Offsets) -> None:
        if ends is self._reached_ends:  # a waiter sharing this question found it reached (positions only grow)
            return
        for target, reached, _ in self._targets:
            if target is ends:  # waiters sharing a question share its wait
                await asyncio.shield(reached)
                return
        if caught_up(self._read_positions(), ends):
            self._reached_ends = ends
            return
        reached = asyncio.get_running_loop().create_future()
        self._targets.append((ends, reached, time.monotonic()))
        if self._poller is None or self._poller.done():
            self._poller = asyncio.create_task(self._poll_positions())
        await asyncio.shield(reached)

    async def _poll_positions(self) -> None:
        """While anyone waits: read the view's positions once per poll and release whoever is reached."""
        while self._targets:
            await asyncio.sleep(self._poll)
            try:
                read = self._read_positions()
            except Exception as exc:  # the store failed: every waiter hears it, nobody hangs
                for _, reached, _ in self._targets:
                    if not reached.done():
                        reached.set_exception(ViewBehind(f"cannot read the status view: {exc}"))
                self._targets.clear()
                return
            now = time.monotonic()
            still: list[tuple[Offsets, asyncio.Future[None], float]] = []
            for ends, reached, since in self._targets:
                if caught_up(read, ends):
                    reached.set_result(None)
                    self._reached_ends = ends
                elif now - since <= self.max_wait:  # older ones have no waiter left: their waits ended
                    still.append((ends, reached, since))
            self._targets = still
