"""Key-ordered scheduling: one lane per ordering key, one run at a time per lane. Pure, not thread-safe.

A run is a key's queued items taken together, so a worker pays one hand-off per run rather than
per task. Items carry a kind ("sync" / "async") and a run never mixes kinds, so each kind of
runner only sees work it can do while a key's order still holds across kinds.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")
Run = tuple[Hashable, list[T]]


class KeyLanes(Generic[T]):
    def __init__(self, kind_of: Callable[[T], str]) -> None:
        self._kind_of = kind_of
        self._lanes: dict[Hashable, deque[T]] = {}
        self._ready: dict[str, deque[Hashable]] = {}
        self._busy: set[Hashable] = set()
        self._queued = 0

    @property
    def queued(self) -> int:
        """Items waiting (not yet taken by a runner)."""
        return self._queued

    def ready_count(self, kind: str) -> int:
        return len(self._ready.get(kind, ()))

    def push(self, key: Hashable, item: T) -> None:
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = deque()
        lane.append(item)
        self._queued += 1
        if len(lane) == 1 and key not in self._busy:
            self._mark_ready(key, lane)

    def _mark_ready(self, key: Hashable, lane: deque[T]) -> None:
        kind = self._kind_of(lane[0])
        ready = self._ready.get(kind)
        if ready is None:
            ready = self._ready[kind] = deque()
        ready.append(key)

    def take(self, kind: str, max_items: int) -> list[Run[T]]:
        """Ready runs of `kind`, at least one key if any is ready, about `max_items` items in all."""
        ready = self._ready.get(kind)
        runs: list[Run[T]] = []
        taken = 0
        while ready and (taken == 0 or taken < max_items):
            key = ready.popleft()
            lane = self._lanes[key]
            items: list[T] = []
            while lane and self._kind_of(lane[0]) == kind:
                items.append(lane.popleft())
            self._busy.add(key)
            self._queued -= len(items)
            taken += len(items)
            runs.append((key, items))
        return runs

    def release(self, key: Hashable) -> None:
        """The key's run finished: its next items (if any) become ready."""
        self._busy.discard(key)
        lane = self._lanes.get(key)
        if not lane:
            self._lanes.pop(key, None)
            return
        self._mark_ready(key, lane)

    def give_back(self, runs: list[Run[T]]) -> None:
        """Taken runs that never started go back to the head of their lanes, their keys first in line
        again (e.g. runs held behind a slow handler, for an idle runner to take)."""
        for key, items in reversed(runs):
            lane = self._lanes.get(key)
            if lane is None:
                lane = self._lanes[key] = deque()
            lane.extendleft(reversed(items))
            self._queued += len(items)
            self._busy.discard(key)
            if lane:
                kind = self._kind_of(lane[0])
                ready = self._ready.get(kind)
                if ready is None:
                    ready = self._ready[kind] = deque()
                ready.appendleft(key)
            else:
                del self._lanes[key]

    def count(self, which: Callable[[T], bool]) -> int:
        """Queued items matching `which`."""
        return sum(1 for lane in self._lanes.values() for item in lane if which(item))

    def drop(self, doomed: Callable[[T], bool]) -> list[T]:
        """Remove queued items for which `doomed` is true (e.g. of revoked partitions)."""
        removed: list[T] = []
        for key in list(self._lanes):
            lane = self._lanes[key]
            keep = deque(i for i in lane if not doomed(i))
            removed.extend(i for i in lane if doomed(i))
            if len(keep) == len(lane):
                continue
            self._lanes[key] = keep
            if not keep and key not in self._busy:
                del self._lanes[key]
        self._queued -= len(removed)
        # Rebuild the ready queues: a key whose head changed kind must move to the other queue.
        previous = [k for ready in self._ready.values() for k in ready]
        self._ready = {}
        for key in dict.fromkeys([*previous, *self._lanes]):
            waiting = self._lanes.get(key)
            if waiting and key not in self._busy:
                self._mark_ready(key, waiting)
        return removed
