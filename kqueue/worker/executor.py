"""Runs handlers with key-ordered concurrency: sync ones on worker threads, async ones on one event loop.

The poll loop pushes items and drains outcomes; it never waits on a handler. Worker threads pull
whole runs (a key's queued items) so a cheap handler costs no thread hop per task. A ticker gives
runs held behind a slow handler back, wakes idle threads for work that nobody serves, and hands
rate limits' tokens to the keys parked for them when they fall due (core/rate_gate.py).
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Mapping

from kqueue.core.lanes import KeyLanes, Run
from kqueue.core.priority import DEFAULT_WEIGHTS, LaneWeights
from kqueue.core.rate_gate import Limits
from kqueue.core.ratelimit import TokenBucket
from kqueue.worker.hands import Hand, start_event_loop, threads_to_wake
from kqueue.worker.runner import Runner
from kqueue.worker.start_hold import FREEZE_GAP, FREEZE_TICK, StartHold
from kqueue.worker.work import Failure, Outcome, WorkItem

Finished = tuple[Hashable, list[Outcome], list[WorkItem] | None]  # key, outcomes, items held back

MAX_RUN_ITEMS = 256
RELEASE_EVERY = 0.002  # seconds a finished key may wait for the keys run after it
CHEAP_ITEM_SECONDS = 0.0002
CHEAP_RUN = 128
# A runner whose handler has run this long counts as stalled: the runs it holds go back to the lanes
# and idle threads wake for the ready work, so nothing waits behind a slow handler while one idles.
STALL_AFTER = 0.003
MIN_TICK = 0.0005  # the shortest wait for a rate limit's token (no spinning on a float's rounding)


def _partition_of_lane(lane: Hashable) -> Hashable:
    return lane[:2] if isinstance(lane, tuple) else lane


def _kind_of(item: WorkItem) -> str:
    """WorkItem.kind in one call (the lanes ask for every item)."""
    task = item.task
    return "async" if task is not None and task.is_async else "sync"


class Executor:
    def __init__(self, concurrency: int, runner: Runner | None = None, weights: LaneWeights = DEFAULT_WEIGHTS,
                 rank_of: Callable[[Hashable], int] | None = None,
                 limits_of: Callable[[WorkItem], Limits] | None = None,
                 holds_after: Callable[[WorkItem, Failure], bool] | None = None) -> None:
        self.concurrency = max(1, concurrency)
        # holds_after: whether a failure stops its key here until the poll loop says what became of
        # it (ordered retries, worker/ordering.py): its later items must not start meanwhile.
        self._holds_after = holds_after
        self._runner = runner or Runner()
        self._run = self._runner.run_sync
        # A lane is (topic, partition, key): partitions take turns, so no backlog crowds out another's.
        # rank_of: a partition's priority lane (core/priority.py): lanes' runs are taken by `weights`.
        # limits_of: the rate limits' buckets a task needs a token of (worker/ratelimits.py).
        self._lanes: KeyLanes[WorkItem] = KeyLanes(_kind_of, _partition_of_lane, rank_of, weights,
                                                   limits_of)
        self._limited = limits_of is not None
        self._tick_saw = 0  # rate limits with parked keys the ticker's current wait allows for
        lock = threading.RLock()
        self._cond = threading.Condition(lock)  # idle sync threads wait here
        self._tick = threading.Condition(lock)  # the ticker waits here
        self._hands: set[Hand] = set()  # runs taken and not finished, per thread or coroutine
        self._takes = 0  # sync takes so far: the ticker tells waiting work from served work
        self._takes_seen = 0
        self._ready_seen = False
        self._given_back = 0
        self._outcomes: list[Outcome] = []
        self._running: dict[Hashable, list[WorkItem]] = {}
        self._stopped = False
        self._seconds_per_item = CHEAP_ITEM_SECONDS * 5  # assume slow until measured: spread the first work
        self._busy_threads = 0
        self._halted = False  # start nothing more (taken or queued): the worker stops to restart
        self._start_hold = StartHold(lambda: self._halted or self._stopped)  # after a freeze (worker/start_hold.py)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._async_active = 0
        threading.Thread(target=self._ticker, name="kqueue-executor-tick", daemon=True).start()
        self._threads = [
            threading.Thread(target=self._thread_main, name=f"kqueue-worker-{i}", daemon=True)
            for i in range(self.concurrency)
        ]
        for thread in self._threads:
            thread.start()

    # -- called by the poll loop -------------------------------------------------------------------
    def submit(self, items: Iterable[WorkItem]) -> None:
        # Each item's lane (WorkItem.lane, inlined: this runs for every task).
        pairs = [((item.topic, item.partition, item.offset if item.key is None else item.key), item)
                 for item in items]
        # Any async item starts the event loop (created on first use): one parked for a rate token or
        # queued behind its key's sync run is served by the loop later, which must exist by then.
        has_async = any(item.task is not None and item.task.is_async for _, item in pairs)
        with self._cond:
            self._lanes.push_many(pairs)
            if self._lanes.ready_count("sync"):
                self._wake_threads(overdue=False)
            if self._limited:
                self._mind_rates()
        if has_async:
            self._async_loop().call_soon_threadsafe(self._start_async_runs)

    def drain(self) -> list[Outcome]:
        with self._cond:
            outcomes, self._outcomes = self._outcomes, []
        return outcomes

    def drop(self, doomed: Callable[[WorkItem], bool]) -> int:
        """Forget queued (not started) items, e.g. of revoked partitions; returns how many."""
        with self._cond:
            dropped = len(self._lanes.drop(doomed))
            if self._lanes.ready_count("sync"):  # a key's head may have turned from async to sync
                self._wake_threads(overdue=False)
            if self._limited:
                self._mind_rates()
            return dropped

    def halt(self) -> int:
        """Start no more items, queued or already taken by a runner; returns how many were queued."""
        with self._cond:
            self._halted = True
            return len(self._lanes.drop(lambda _item: True))

    def hold_starts(self, seconds: float) -> None:
        """Start no item for `seconds` (items then start if still wanted)."""
        self._start_hold.hold(seconds)

    def _ticker(self) -> None:
        """Ticks every FREEZE_TICK to notice freezes; every STALL_AFTER while runs are out, to notice
        work held behind a slow handler."""
        lanes = self._lanes
        with self._cond:
            while not self._stopped:
                wait = STALL_AFTER if self._hands else FREEZE_TICK
                self._tick_saw = lanes.waiting_buckets()
                if self._tick_saw:  # keys wait for a rate limit's token: look when the next is due
                    wait = max(MIN_TICK, min(wait, lanes.next_unpark_at() - time.monotonic()))
                self._tick.wait(wait)
                now = time.monotonic()
                self._start_hold.tick(now)
                if lanes.parked_keys and lanes.unpark():
                    self._serve_unparked()
                # Held: nothing starts. Ready work no runner took within a tick (a wake-up lost in a
                # race) is served on the next tick even when no runs are out.
                held = self._halted or now < self._start_hold.resume_at
                if (self._hands or self._lanes.ready_count("sync")) and not held:
                    self._unstall(now)

    # -- rate limits -------------------------------------------------------------------------------
    def retune(self, shares: Mapping[TokenBucket, float]) -> None:
        """Set each rate limit's tokens per second here (this worker's share, after a rebalance)."""
        with self._cond:
            now = time.monotonic()
            for bucket, rate in shares.items():
                bucket.retune(rate, now)
            self._tick.notify()  # a token may be due sooner now

    def rate_waiting(self) -> int:
        """Items waiting for a rate limit's token (parked keys' and what queues behind them)."""
        return self._lanes.parked

    def rate_waiting_by_partition(self) -> dict[Hashable, int]:
        with self._cond:  # per (topic, partition)
            return self._lanes.parked_by_group()

    def _mind_rates(self) -> None:  # under the lock: keys wait on a rate limit the ticker's wait ignores
        if self._lanes.waiting_buckets() > self._tick_saw:
            self._tick.notify()

    def _serve_unparked(self) -> None:
        """Under the lock: keys that got their tokens are ready; wake runners for them."""
        if self._lanes.ready_count("sync"):
            self._wake_threads(overdue=False)
        if self._lanes.ready_count("async") and self._loop is not None:
            self._loop.call_soon_threadsafe(self._start_async_runs)

    def _unwanted(self, item: WorkItem) -> bool:
        """Not to be started: the executor is halted, or the item's partition is no longer ours (a
        runner may have taken it before the revoke or loss dropped its partition's queued items)."""
        owner = item.owner
        paused = owner.paused_work if owner is not None else None  # read once: the poll loop may end it
        if paused is not None and paused.hold_back(item):
            return True  # its queue is paused: handed back to the poll loop (worker/pausing.py)
        return self._halted or (owner is not None and not owner.live)

    @property
    def seconds_per_item(self) -> float:
        """The moving average of handler time per task (cheap handlers: microseconds)."""
        return self._seconds_per_item

    def ready_by_rank(self) -> list[int]:
        """Keys with tasks ready to start, per priority lane (0 high, 1 normal, 2 low)."""
        with self._cond:
            return self._lanes.ready_by_rank()

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
            return {"queued": self._lanes.queued, "rate_waiting": self._lanes.parked,
                    "ready_sync": self._lanes.ready_count("sync"), "ready_async": self._lanes.ready_count("async"),
                    "running_keys": len(self._running),
                    "busy_threads": self._busy_threads, "outcomes": len(self._outcomes),
                    "stalled_threads": self._stalled(time.monotonic()), "runs_given_back": self._given_back,
                    "ms_per_item": round(self._seconds_per_item * 1000, 3)}

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
            self._tick.notify()
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)

    # -- sync runners ------------------------------------------------------------------------------
    def _thread_main(self) -> None:
        cond = self._cond
        hand = Hand(sync=True)
        next_run = hand.pending.popleft
        start_hold, run, monotonic = self._start_hold, self._run, time.monotonic
        while True:
            with cond:
                runs = self._lanes.take("sync", self._sync_run_size())
                while not runs and not self._stopped:
                    cond.wait()
                    runs = self._lanes.take("sync", self._sync_run_size())
                if self._stopped:
                    return
                self._busy_threads += 1
                self._takes += 1
                self._hold(hand, runs)
            finished: list[Finished] = []
            since = hand.taken_at
            ended = monotonic()  # one clock read per task: a key's end is the next key's start
            while True:
                try:
                    key, items = next_run()
                except IndexError:  # all run, or the ticker took the rest back
                    break
                results: list[Outcome] = []
                held: list[WorkItem] | None = None
                key_started = hand.run_started = now = ended
                try:
                    for index, item in enumerate(items):
                        if index:
                            now = monotonic()
                        # StartHold.held's test inlined (its clock read is the one above).
                        if now < start_hold.resume_at or now - start_hold.last_tick > FREEZE_GAP:
                            start_hold.wait()
                        owner = item.owner  # `_unwanted` is asked only if something could make it so
                        if (owner is None or owner.paused_work is not None or not owner.live
                                or self._halted) and self._unwanted(item):
                            continue
                        failure = run(item)
                        results.append((item, failure))
                        if failure is not None and self._holding(item, failure):
                            held = items[index + 1:]
                            break
                finally:
                    finished.append((key, results, held))
                ended = monotonic()
                # A moving average of handler time per item: enough to tell cheap handlers from slow.
                per_item = (ended - key_started) / max(1, len(items))
                self._seconds_per_item = 0.8 * self._seconds_per_item + 0.2 * per_item
                # Finished keys are released in groups (one lock round per group, cheap handlers
                # stay cheap), but never held longer than a couple of milliseconds behind a slow key.
                if ended - since > RELEASE_EVERY:
                    self._finish_runs(finished)
                    finished = []
                    since = ended = monotonic()
            self._finish_runs(finished, hand)

    def _hold(self, hand: Hand, runs: list[Run[WorkItem]]) -> None:
        """Under the lock: `hand` took `runs`; the ticker ticks fast while any hand holds runs."""
        for key, items in runs:
            self._running[key] = items
        hand.pending.extend(runs)
        hand.taken_at = time.monotonic()
        # A thread starts at once; a coroutine when the event loop gets to it.
        hand.run_started = hand.taken_at if hand.sync else math.inf
        if not self._hands:
            self._tick.notify()
        self._hands.add(hand)

    def _holding(self, item: WorkItem, failure: Failure) -> bool:
        holds = self._holds_after
        if holds is None or not holds(item, failure):
            return False
        item.held_lane = True
        return True

    def take_held(self, lane: Hashable) -> list[WorkItem]:
        """The items a held key queues (in order), taken out; the key is free again."""
        with self._cond:
            items = self._lanes.take_held(lane)
            self._after_change()
            return items

    def unhold(self, lane: Hashable) -> None:
        """A held key's items may start again, in their order."""
        with self._cond:
            self._lanes.release(lane)
            self._after_change()

    def _after_change(self) -> None:  # under the lock: lanes changed outside a run
        if self._lanes.ready_count("sync"):
            self._wake_threads(overdue=False)
        if self._limited:
            self._mind_rates()
        if self._lanes.ready_count("async") and self._loop is not None:
            self._loop.call_soon_threadsafe(self._start_async_runs)

    def _finish_runs(self, finished: list[Finished], hand: Hand | None = None) -> None:
        """Settle finished runs; with `hand`, the last ones of its take."""
        last = hand is not None and hand.sync
        with self._cond:
            for key, results, held in finished:
                del self._running[key]
                if held is None:
                    self._lanes.release(key)
                else:  # an ordered task failed: its key waits for the poll loop (take_held / unhold)
                    self._lanes.hold(key, held)
                self._outcomes.extend(results)
            if self._limited:
                self._mind_rates()
            if hand is not None:
                self._hands.discard(hand)
            if last:
                self._busy_threads -= 1  # this thread goes back for more work itself
            wake_sync = self._lanes.ready_count("sync") > 0
            wake_async = self._lanes.ready_count("async") > 0
            if wake_sync and self._busy_threads + (1 if last else 0) < self._threads_wanted():
                self._cond.notify()
        if wake_async and self._loop is not None:
            # A key's next task may be async: the event loop has to hear about it.
            self._loop.call_soon_threadsafe(self._start_async_runs)

    def _wake_threads(self, overdue: bool) -> None:
        """Under the lock, with ready sync work: wake the idle threads `threads_to_wake` asks for."""
        busy, wanted = self._busy_threads, self._threads_wanted()
        stalled = self._stalled(time.monotonic()) if busy >= wanted and self._hands else 0
        wake = threads_to_wake(wanted, busy, stalled, self.concurrency - busy, overdue)
        if wake:
            self._cond.notify(wake)

    def _stalled(self, now: float) -> int:
        """Threads whose current handler has run for STALL_AFTER or longer."""
        late = now - STALL_AFTER
        return sum(1 for hand in self._hands if hand.sync and hand.run_started <= late)

    def _unstall(self, now: float) -> None:
        """Under the lock, on a tick: runs a thread took STALL_AFTER ago and has not started go back
        to the lanes while a thread idles, and idle threads wake for ready work that threads stalled
        in slow handlers do not serve, or that waited a whole tick untaken. A coroutine gives back
        what it holds only when its own handler stalls: while others keep the event loop busy,
        another coroutine would not start any sooner."""
        late = now - STALL_AFTER
        async_back = overdue = False
        for hand in self._hands:
            if not hand.pending:
                continue
            if hand.sync and hand.taken_at <= late and self._busy_threads < self.concurrency:
                overdue = self._give_back(hand) or overdue
            elif not hand.sync and hand.run_started <= late and self._async_active < self.concurrency:
                async_back = self._give_back(hand) or async_back
        ready = self._lanes.ready_count("sync") > 0
        if ready:
            overdue = overdue or (self._ready_seen and self._takes == self._takes_seen)
            self._wake_threads(overdue)
        self._ready_seen, self._takes_seen = ready, self._takes
        if async_back and self._loop is not None:
            self._loop.call_soon_threadsafe(self._start_async_runs)

    def _give_back(self, hand: Hand) -> bool:
        """Under the lock: the runs `hand` holds and has not started go back to the lanes."""
        runs: list[Run[WorkItem]] = []
        while True:
            try:
                runs.append(hand.pending.pop())
            except IndexError:
                break
        runs.reverse()
        for key, _items in runs:
            del self._running[key]
        self._lanes.give_back(runs)
        self._given_back += len(runs)
        return bool(runs)

    def _threads_wanted(self) -> int:
        """How many threads to wake. Slow handlers get every thread; for cheap ones (a few µs, where
        waking eight threads costs more in GIL hand-offs than the work) one thread per CHEAP_RUN tasks."""
        if self._seconds_per_item > CHEAP_ITEM_SECONDS:
            return self.concurrency
        return max(1, min(self.concurrency, (self._lanes.queued - self._lanes.parked) // CHEAP_RUN))

    def _sync_run_size(self) -> int:
        # Slow handlers: a key per take, or a slow task would hold the other keys of its run back
        # while idle threads wait (seen: 9 tasks behind a 30 s one). Cheap ones: keys in groups.
        return self._run_size() if self._seconds_per_item <= CHEAP_ITEM_SECONDS else 1

    def _run_size(self) -> int:
        # Share the queued work among the threads that are wanted; one key's run may still exceed this.
        return max(1, min(MAX_RUN_ITEMS, (self._lanes.queued - self._lanes.parked) // self._threads_wanted()))

    # -- async runner ------------------------------------------------------------------------------
    def _async_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = start_event_loop("kqueue-async")
        return self._loop

    def _start_async_runs(self) -> None:
        loop = self._async_loop()
        while self._async_active < self.concurrency:
            with self._cond:
                # Cheap handlers: several keys per coroutine (one task and one hand-back per group);
                # slow ones: a key each, so `concurrency` of them really run at once.
                group_size = self._run_size() if self._seconds_per_item <= CHEAP_ITEM_SECONDS else 1
                runs = self._lanes.take("async", group_size)
                if not runs:
                    return
                hand = Hand(sync=False)
                self._hold(hand, runs)
            self._async_active += 1
            loop.create_task(self._async_runs(hand))

    async def _async_runs(self, hand: Hand) -> None:
        finished: list[Finished] = []
        next_run = hand.pending.popleft
        try:
            while True:
                try:
                    key, items = next_run()
                except IndexError:  # all run, or the ticker took the rest back
                    break
                results: list[Outcome] = []
                held: list[WorkItem] | None = None
                started = hand.run_started = time.monotonic()
                try:
                    for index, item in enumerate(items):
                        await self._start_hold.wait_async()
                        if not self._unwanted(item):
                            failure = await self._runner.run_async(item)
                            results.append((item, failure))
                            if failure is not None and self._holding(item, failure):
                                held = items[index + 1:]
                                break
                finally:
                    finished.append((key, results, held))
                per_item = (time.monotonic() - started) / max(1, len(items))
                self._seconds_per_item = 0.8 * self._seconds_per_item + 0.2 * per_item
        finally:
            self._async_active -= 1
            self._finish_runs(finished, hand)
            self._start_async_runs()

