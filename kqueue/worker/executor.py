"""Runs handlers with key-ordered concurrency: sync ones on worker threads, async ones on one event loop.

The poll loop pushes items and drains outcomes; it never waits on a handler. Worker threads pull
whole runs (a key's queued items) so a cheap handler costs no thread hop per task.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Hashable, Iterable

from kqueue.core.lanes import KeyLanes
from kqueue.worker.runner import Runner
from kqueue.worker.work import Outcome, WorkItem

MAX_RUN_ITEMS = 256
RELEASE_EVERY = 0.002  # seconds a finished key may wait for the keys run after it
# A process frozen this long (no tick for FREEZE_GAP) holds new starts for FREEZE_HOLD: time for the
# poll loop to learn whether its partitions were taken away meanwhile (one heartbeat and one poll).
FREEZE_TICK = 0.25
FREEZE_GAP = 3.0
FREEZE_HOLD = 2.0
CHEAP_ITEM_SECONDS = 0.0002
CHEAP_RUN = 128


def _partition_of_lane(lane: Hashable) -> Hashable:
    return lane[:2] if isinstance(lane, tuple) else lane


class Executor:
    def __init__(self, concurrency: int, runner: Runner | None = None) -> None:
        self.concurrency = max(1, concurrency)
        self._runner = runner or Runner()
        self._run = self._runner.run_sync
        # A lane is (topic, partition, key): partitions take turns, so no backlog crowds out another's.
        self._lanes: KeyLanes[WorkItem] = KeyLanes(lambda item: item.kind, _partition_of_lane)
        self._cond = threading.Condition()
        self._outcomes: list[Outcome] = []
        self._running: dict[Hashable, list[WorkItem]] = {}
        self._stopped = False
        self._seconds_per_item = CHEAP_ITEM_SECONDS * 5  # assume slow until measured: spread the first work
        self._busy_threads = 0
        self._halted = False  # start nothing more (taken or queued): the worker stops to restart
        # After the process was frozen (SIGSTOP, a VM pause) its partitions may be someone else's
        # by now, and the poll loop has not heard yet: starts wait until it has had time to.
        self._resume_at = 0.0
        self._last_tick = time.monotonic()
        threading.Thread(target=self._watch_freezes, name="kqueue-freeze-watch", daemon=True).start()
        self._threads = [
            threading.Thread(target=self._thread_main, name=f"kqueue-worker-{i}", daemon=True)
            for i in range(self.concurrency)
        ]
        for thread in self._threads:
            thread.start()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._async_active = 0

    # -- called by the poll loop -------------------------------------------------------------------
    def submit(self, items: Iterable[WorkItem]) -> None:
        has_async = False
        with self._cond:
            for item in items:
                self._lanes.push(item.lane, item)
                has_async = has_async or item.kind == "async"
            idle_wanted = self._threads_wanted() - self._busy_threads
            if self._lanes.ready_count("sync") and idle_wanted > 0:
                self._cond.notify(idle_wanted)
        if has_async:
            self._async_loop().call_soon_threadsafe(self._start_async_runs)

    def drain(self) -> list[Outcome]:
        with self._cond:
            outcomes, self._outcomes = self._outcomes, []
        return outcomes

    def drop(self, doomed: Callable[[WorkItem], bool]) -> int:
        """Forget queued (not started) items, e.g. of revoked partitions; returns how many."""
        with self._cond:
            return len(self._lanes.drop(doomed))

    def halt(self) -> int:
        """Start no more items, queued or already taken by a runner; returns how many were queued."""
        with self._cond:
            self._halted = True
            return len(self._lanes.drop(lambda _item: True))

    def hold_starts(self, seconds: float) -> None:
        """Start no item for `seconds` (items then start if still wanted)."""
        self._resume_at = max(self._resume_at, time.monotonic() + seconds)

    def _watch_freezes(self) -> None:
        while not self._stopped:
            time.sleep(FREEZE_TICK)
            self._froze(time.monotonic())

    def _froze(self, now: float) -> None:
        """Hold starts if this process did not run for a while: the ticker's last tick is old although
        the clock ran on. Runners ask too, as they may wake before the ticker does."""
        if now - self._last_tick > FREEZE_GAP:
            self._resume_at = max(self._resume_at, now + FREEZE_HOLD)
        self._last_tick = now

    def _held(self) -> bool:
        now = time.monotonic()  # one clock read per item
        if now - self._last_tick > FREEZE_GAP:
            self._froze(now)
        return now < self._resume_at and not self._halted and not self._stopped

    def _wait_thaw(self) -> None:
        """Wait out a hold on starts (sync runners)."""
        while self._held():
            time.sleep(0.02)

    async def _thawed_async(self) -> None:
        while self._held():
            await asyncio.sleep(0.02)

    def _unwanted(self, item: WorkItem) -> bool:
        """Not to be started: the executor is halted, or the item's partition is no longer ours (a
        runner may have taken it before the revoke or loss dropped its partition's queued items)."""
        owner = item.owner
        return self._halted or (owner is not None and not owner.live)

    def running(self) -> int:
        """Keys with a handler running now (queued items not counted)."""
        with self._cond:
            return len(self._running)

    def busy_slots(self) -> int:
        """Handler slots working now: threads on a run and async tasks (at most the concurrency)."""
        with self._cond:
            return min(self.concurrency, self._busy_threads + self._async_active)

    def state(self) -> dict[str, int | float]:
        with self._cond:
            return {"queued": self._lanes.queued, "ready_sync": self._lanes.ready_count("sync"),
                    "ready_async": self._lanes.ready_count("async"), "running_keys": len(self._running),
                    "busy_threads": self._busy_threads, "outcomes": len(self._outcomes),
                    "ms_per_item": round(self._seconds_per_item * 1000, 3)}

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)

    # -- sync runners ------------------------------------------------------------------------------
    def _thread_main(self) -> None:
        cond = self._cond
        while True:
            with cond:
                runs = self._lanes.take("sync", self._sync_run_size())
                while not runs and not self._stopped:
                    cond.wait()
                    runs = self._lanes.take("sync", self._sync_run_size())
                if self._stopped:
                    return
                self._busy_threads += 1
                for key, items in runs:
                    self._running[key] = items
            finished: list[tuple[Hashable, list[Outcome]]] = []
            since = time.monotonic()
            for key, items in runs:
                results: list[Outcome] = []
                key_started = time.monotonic()
                try:
                    for item in items:
                        self._wait_thaw()
                        if not self._unwanted(item):
                            results.append((item, self._run(item)))
                finally:
                    finished.append((key, results))
                # A moving average of handler time per item: enough to tell cheap handlers from slow.
                per_item = (time.monotonic() - key_started) / max(1, len(items))
                self._seconds_per_item = 0.8 * self._seconds_per_item + 0.2 * per_item
                # Finished keys are released in groups (one lock round per group, cheap handlers
                # stay cheap), but never held longer than a couple of milliseconds behind a slow key.
                if time.monotonic() - since > RELEASE_EVERY:
                    self._finish_runs(finished)
                    finished = []
                    since = time.monotonic()
            self._finish_runs(finished, last=True)

    def _finish_runs(self, finished: list[tuple[Hashable, list[Outcome]]], last: bool = False) -> None:
        with self._cond:
            for key, results in finished:
                del self._running[key]
                self._lanes.release(key)
                self._outcomes.extend(results)
            if last:
                self._busy_threads -= 1  # this thread goes back for more work itself
            wake_sync = self._lanes.ready_count("sync") > 0
            wake_async = self._lanes.ready_count("async") > 0
            if wake_sync and self._busy_threads + (1 if last else 0) < self._threads_wanted():
                self._cond.notify()
        if wake_async and self._loop is not None:
            # A key's next task may be async: the event loop has to hear about it.
            self._loop.call_soon_threadsafe(self._start_async_runs)

    def _threads_wanted(self) -> int:
        """How many threads to wake. Slow handlers get every thread; for cheap ones (a few µs, where
        waking eight threads costs more in GIL hand-offs than the work) one thread per CHEAP_RUN tasks."""
        if self._seconds_per_item > CHEAP_ITEM_SECONDS:
            return self.concurrency
        return max(1, min(self.concurrency, self._lanes.queued // CHEAP_RUN))

    def _sync_run_size(self) -> int:
        # Slow handlers: a key per take, or a slow task would hold the other keys of its run back
        # while idle threads wait (seen: 9 tasks behind a 30 s one). Cheap ones: keys in groups.
        return self._run_size() if self._seconds_per_item <= CHEAP_ITEM_SECONDS else 1

    def _run_size(self) -> int:
        # Share the queued work among the threads that are wanted; one key's run may still exceed this.
        return max(1, min(MAX_RUN_ITEMS, self._lanes.queued // self._threads_wanted()))

    # -- async runner ------------------------------------------------------------------------------
    def _async_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            loop = asyncio.new_event_loop()
            started = threading.Event()

            def main() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(started.set)
                loop.run_forever()

            threading.Thread(target=main, name="kqueue-async", daemon=True).start()
            started.wait()
            self._loop = loop
        return self._loop

    def _start_async_runs(self) -> None:
        loop = self._async_loop()
        while self._async_active < self.concurrency:
            with self._cond:
                # Cheap handlers: several keys per coroutine (one task and one hand-back per group);
                # slow ones: a key each, so `concurrency` of them really run at once.
                group_size = self._run_size() if self._seconds_per_item <= CHEAP_ITEM_SECONDS else 1
                runs = self._lanes.take("async", group_size)
                for key, items in runs:
                    self._running[key] = items
            if not runs:
                return
            self._async_active += 1
            loop.create_task(self._async_runs(runs))

    async def _async_runs(self, runs: list[tuple[Hashable, list[WorkItem]]]) -> None:
        finished: list[tuple[Hashable, list[Outcome]]] = []
        try:
            for key, items in runs:
                results: list[Outcome] = []
                started = time.monotonic()
                try:
                    for item in items:
                        await self._thawed_async()
                        if not self._unwanted(item):
                            results.append((item, await self._runner.run_async(item)))
                finally:
                    finished.append((key, results))
                per_item = (time.monotonic() - started) / max(1, len(items))
                self._seconds_per_item = 0.8 * self._seconds_per_item + 0.2 * per_item
        finally:
            self._async_active -= 1
            self._finish_runs(finished)
            self._start_async_runs()

