"""Key-ordered scheduling: one lane per ordering key, one run at a time per lane. Pure, not thread-safe.

A run is a key's queued items taken together, so a worker pays one hand-off per run rather than
per task. Ready keys are taken in turn across groups (the worker's groups are partitions), so a
backlog on one partition never makes the keys of another wait behind all of it. Items carry a
kind ("sync" / "async") and a run never mixes kinds, so each kind of runner only sees work it can
do while a key's order still holds across kinds.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")
Run = tuple[Hashable, list[T]]


class _Ready:
    """Ready keys of one kind, per group, and the groups in the order they take turns."""

    __slots__ = ("count", "groups", "turns")

    def __init__(self) -> None:
        self.groups: dict[Hashable, deque[Hashable]] = {}
        self.turns: deque[Hashable] = deque()
        self.count = 0

    def add(self, group: Hashable, key: Hashable) -> None:
        keys = self.groups.get(group)
        if keys is None:
            keys = self.groups[group] = deque()
            self.turns.append(group)
        keys.append(key)
        self.count += 1

    def add_first(self, group: Hashable, key: Hashable) -> None:
        """First in line again: the key at its group's head, the group's turn next."""
        keys = self.groups.get(group)
        if keys is None:
            keys = self.groups[group] = deque()
        else:
            self.turns.remove(group)
        self.turns.appendleft(group)
        keys.appendleft(key)
        self.count += 1

    def pop(self) -> Hashable:
        """The next group's oldest ready key; that group then goes to the back of the turns."""
        group = self.turns.popleft()
        keys = self.groups[group]
        key = keys.popleft()
        if keys:
            self.turns.append(group)
        else:
            del self.groups[group]
        self.count -= 1
        return key

    def waiting(self) -> list[Hashable]:
        return [k for keys in self.groups.values() for k in keys]


def _whole(key: Hashable) -> Hashable:
    return None  # one group: plain first-in, first-out


class KeyLanes(Generic[T]):
    def __init__(self, kind_of: Callable[[T], str], group_of: Callable[[Hashable], Hashable] = _whole) -> None:
        self._kind_of = kind_of
        self._group_of = group_of
        self._lanes: dict[Hashable, deque[T]] = {}
        self._ready: dict[str, _Ready] = {}
        self._busy: set[Hashable] = set()
        self._queued = 0

    @property
    def queued(self) -> int:
        """Items waiting (not yet taken by a runner)."""
        return self._queued

    def ready_count(self, kind: str) -> int:
        ready = self._ready.get(kind)
        return ready.count if ready is not None else 0

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
            ready = self._ready[kind] = _Ready()
        ready.add(self._group_of(key), key)

    def take(self, kind: str, max_items: int) -> list[Run[T]]:
        """Ready runs of `kind`, at least one key if any is ready, about `max_items` items in all;
        groups take turns, a key each."""
        ready = self._ready.get(kind)
        runs: list[Run[T]] = []
        taken = 0
        while ready is not None and ready.count and (taken == 0 or taken < max_items):
            key = ready.pop()
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
                    ready = self._ready[kind] = _Ready()
                ready.add_first(self._group_of(key), key)
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
        previous = [k for ready in self._ready.values() for k in ready.waiting()]
        self._ready = {}
        for key in dict.fromkeys([*previous, *self._lanes]):
            waiting = self._lanes.get(key)
            if waiting and key not in self._busy:
                self._mark_ready(key, waiting)
        return removed
