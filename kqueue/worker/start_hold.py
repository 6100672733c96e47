"""Holding new starts after the process was frozen (SIGSTOP, a VM pause): its partitions may be someone
else's by now and the poll loop has not heard yet, so starts wait until it has had time to (one
heartbeat and one poll). Split from the executor (worker/executor.py), whose ticker and runners ask.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

# A process frozen this long (no tick for FREEZE_GAP) holds new starts for FREEZE_HOLD.
FREEZE_TICK = 0.25
FREEZE_GAP = 3.0
FREEZE_HOLD = 2.0


class StartHold:
    __slots__ = ("_off", "last_tick", "resume_at")

    def __init__(self, off: Callable[[], bool]) -> None:
        self._off = off  # true once the executor starts nothing anyway (halted, stopped): nothing to wait for
        self.resume_at = 0.0
        self.last_tick = time.monotonic()

    def hold(self, seconds: float) -> None:
        """Start no item for `seconds` (items then start if still wanted)."""
        self.resume_at = max(self.resume_at, time.monotonic() + seconds)

    def tick(self, now: float) -> None:
        """Hold starts if this process did not run for a while: the ticker's last tick is old although
        the clock ran on. Runners ask too, as they may wake before the ticker does."""
        if now - self.last_tick > FREEZE_GAP:
            self.resume_at = max(self.resume_at, now + FREEZE_HOLD)
        self.last_tick = now

    def held(self) -> bool:
        now = time.monotonic()  # one clock read per item
        if now - self.last_tick > FREEZE_GAP:
            self.tick(now)
        return now < self.resume_at and not self._off()

    def wait(self) -> None:
        """Wait out a hold on starts (sync runners)."""
        while self.held():
            time.sleep(0.02)

    async def wait_async(self) -> None:
        while self.held():
            await asyncio.sleep(0.02)
