"""Key-ordered scheduling: one lane per ordering key, one run at a time per lane. Pure, not thread-safe.

A run is a key's queued items taken together, so a worker pays one hand-off per run rather than
per task. Ready keys are taken in turn across groups (the worker's groups are partitions), so a
backlog on one partition never makes the keys of another wait behind all of it. Items carry a
kind ("sync" / "async") and a run never mixes kinds, so each kind of runner only sees work it can
do while a key's order still holds across kinds.

With `rank_of` (a group's priority lane: 0 high, 1 normal, 2 low) the ready keys are kept per lane
too, and a `LanePicker` (core/lane_pick.py) chooses the lane of each next run by the lanes' weights;
groups of one lane still take turns. A key lives in one group, so its order is never at stake.

With `limits_of` (the token buckets an item needs: its type's group-wide rate limit) a key whose next
item has no token waits, parked, out of the ready queues with its later items behind it, until the
executor's ticker finds the token there (`unpark`); core/rate_gate.py decides.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from typing import Generic, TypeVar

from kqueue.core.lane_pick import LanePicker
from kqueue.core.priority import DEFAULT_WEIGHTS, LANES, NORMAL_RANK, LaneWeights
from kqueue.core.rate_gate import Limits, RateGate

T = TypeVar("T")
Run = tuple[Hashable, list[T]]


class _Ready:
    """Ready keys of one kind, per group, and per lane the groups in the order they take turns."""

    __slots__ = ("count", "counts", "groups", "picker", "turns")

    def __init__(self, picker: LanePicker | None) -> None:
        self.groups: dict[Hashable, deque[Hashable]] = {}
        self.turns: list[deque[Hashable]] = [deque() for _ in LANES]
        self.counts = [0] * len(LANES)  # ready keys per lane
        self.count = 0
        self.picker = picker  # None: one lane, nothing to choose

    def add(self, group: Hashable, key: Hashable, rank: int) -> None:
        keys = self.groups.get(group)
        if keys is None:
            keys = self.groups[group] = deque()
            self.turns[rank].append(group)
        keys.append(key)
        counts = self.counts
        if not counts[rank] and self.picker is not None:
            self.picker.arrive(rank)
        counts[rank] += 1
        self.count += 1

    def add_first(self, group: Hashable, key: Hashable, rank: int) -> None:
        """First in line again: the key at its group's head, the group's turn next in its lane."""
        keys = self.groups.get(group)
        turns = self.turns[rank]
        if keys is None:
            keys = self.groups[group] = deque()
        else:
            turns.remove(group)
        turns.appendleft(group)
        keys.appendleft(key)
        counts = self.counts
        if not counts[rank] and self.picker is not None:
            self.picker.arrive(rank)
        counts[rank] += 1
        self.count += 1

    def pop(self) -> tuple[Hashable, int]:
        """(the key, its lane): the lane the picker chooses (if more than one has ready keys), its next
        group's oldest ready key; that group then goes to the back of its lane's turns."""
        counts = self.counts
        if counts[NORMAL_RANK] == self.count:  # one lane ready, the usual one: nothing to choose
            rank = NORMAL_RANK
        elif self.picker is None:
            rank = next(r for r, count in enumerate(counts) if count)
        else:
            rank = self.picker.pick(counts)
        turns = self.turns[rank]
        group = turns.popleft()
        keys = self.groups[group]
        key = keys.popleft()
        if keys:
            turns.append(group)
        else:
            del self.groups[group]
        counts[rank] -= 1
        self.count -= 1
        return key, rank

    def waiting(self) -> list[Hashable]:
        return [k for keys in self.groups.values() for k in keys]


def _whole(key: Hashable) -> Hashable:
    return None  # one group: plain first-in, first-out


class KeyLanes(Generic[T]):
    def __init__(self, kind_of: Callable[[T], str], group_of: Callable[[Hashable], Hashable] = _whole,
                 rank_of: Callable[[Hashable], int] | None = None, weights: LaneWeights = DEFAULT_WEIGHTS,
                 limits_of: Callable[[T], Limits] | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        """rank_of: a group's priority lane (0 high, 1 normal, 2 low); None: every group is normal.
        limits_of: the rate limits' token buckets an item needs; None: nothing is limited."""
        self._kind_of = kind_of
        self._group_of = group_of
        self._rank_of = rank_of
        self._weights = weights
        self._ranks: dict[Hashable, int] = {}  # rank_of's answers (groups are partitions: few)
        self._lanes: dict[Hashable, deque[T]] = {}
        self._ready: dict[str, _Ready] = {}
        self._pickers: dict[str, LanePicker] = {}  # per kind, kept when the ready queues are rebuilt
        self._busy: set[Hashable] = set()
        self._queued = 0
        self._gate: RateGate[T] | None = RateGate(limits_of, clock) if limits_of is not None else None

    @property
    def queued(self) -> int:
        """Items waiting (not yet taken by a runner), parked ones included."""
        return self._queued

    @property
    def parked(self) -> int:
        """Items waiting for a rate limit's token: parked keys' heads and the items behind them."""
        return self._gate.items if self._gate is not None else 0

    @property
    def parked_keys(self) -> int:
        return self._gate.parked_keys if self._gate is not None else 0

    def parked_by_group(self) -> dict[Hashable, int]:
        return dict(self._gate.by_group) if self._gate is not None else {}

    def waiting_buckets(self) -> int:
        """Rate limits with keys waiting on them."""
        return self._gate.waiting_buckets if self._gate is not None else 0

    def next_unpark_at(self) -> float:
        """When a parked key can next get its token (monotonic seconds, inf: never or none parked)."""
        return self._gate.next_due() if self._gate is not None else float("inf")

    def unpark(self) -> int:
        """Parked keys whose token is there now become ready (their heads' tokens set aside); how many."""
        if self._gate is None:
            return 0
        keys = self._gate.unpark(self._lanes)
        for key in keys:
            lane = self._lanes[key]
            group = self._group_of(key)
            self._ready_of(self._kind_of(lane[0])).add(group, key, self._rank(group))
        return len(keys)

    def ready_by_rank(self) -> list[int]:
        """Keys ready to run per priority lane (0 high, 1 normal, 2 low), of either kind. A key whose
        items wait behind its own running run is not ready: nothing could start it sooner."""
        counts = [0] * len(LANES)
        for ready in self._ready.values():
            counts = [a + b for a, b in zip(counts, ready.counts, strict=True)]
        return counts

    def ready_count(self, kind: str) -> int:
        ready = self._ready.get(kind)
        return ready.count if ready is not None else 0

    def _rank(self, group: Hashable) -> int:
        rank = self._ranks.get(group)
        if rank is None:
            rank = self._ranks[group] = NORMAL_RANK if self._rank_of is None else self._rank_of(group)
        return rank

    def push(self, key: Hashable, item: T) -> None:
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = deque()
        lane.append(item)
        self._queued += 1
        if len(lane) == 1 and key not in self._busy:
            self._mark_ready(key, lane)
        elif self._gate is not None:
            self._gate.pushed(key)

    def push_many(self, pairs: Sequence[tuple[Hashable, T]]) -> None:
        """`push` for each (key, item) in order: one call per batch, the lookups it repeats kept local."""
        lanes, busy, gate, mark_ready = self._lanes, self._busy, self._gate, self._mark_ready
        for key, item in pairs:
            lane = lanes.get(key)
            if lane is None:
                lane = lanes[key] = deque((item,))
                if key not in busy:
                    mark_ready(key, lane)
                elif gate is not None:
                    gate.pushed(key)
                continue
            lane.append(item)
            if len(lane) == 1 and key not in busy:
                mark_ready(key, lane)
            elif gate is not None:
                gate.pushed(key)
        self._queued += len(pairs)

    def _ready_of(self, kind: str) -> _Ready:
        ready = self._ready.get(kind)
        if ready is None:
            picker = self._pickers.get(kind)
            if picker is None and self._rank_of is not None:
                picker = self._pickers[kind] = LanePicker(self._weights)
            ready = self._ready[kind] = _Ready(picker)
        return ready

    def _mark_ready(self, key: Hashable, lane: deque[T]) -> None:
        group = self._group_of(key)
        if self._gate is not None and not self._gate.admit(key, group, lane):
            return  # parked until its token is there
        kind = self._kind_of(lane[0])
        ready = self._ready.get(kind)
        if ready is None:
            ready = self._ready_of(kind)
        rank = self._ranks.get(group)
        ready.add(group, key, rank if rank is not None else self._rank(group))

    def take(self, kind: str, max_items: int) -> list[Run[T]]:
        """Ready runs of `kind`, at least one key if any is ready, about `max_items` items in all;
        lanes by their weights, groups of a lane take turns, a key each."""
        ready = self._ready.get(kind)
        runs: list[Run[T]] = []
        if ready is None:
            return runs
        taken = 0
        pop, picker, counts, lanes, kind_of = ready.pop, ready.picker, ready.counts, self._lanes, self._kind_of
        gate = self._gate
        while ready.count and (taken == 0 or taken < max_items):
            key, rank = pop()
            lane = lanes[key]
            items: list[T] = []
            if gate is None:
                while lane and kind_of(lane[0]) == kind:
                    items.append(lane.popleft())
            else:  # the head's tokens were set aside when it became ready; later items need their own
                gate.started(key, lane[0])
                items.append(lane.popleft())
                while lane and kind_of(lane[0]) == kind and gate.follows(lane[0]):
                    items.append(lane.popleft())
            self._busy.add(key)
            self._queued -= len(items)
            if picker is not None and ready.count != counts[rank]:  # another lane has ready work too
                picker.charge(rank, len(items))
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
            lane = self._put_back(key, items)
            self._busy.discard(key)
            if lane:
                # Its lane was charged for the run when it was taken (if another lane had work) and
                # may be again when it is retaken: rare, and it only favours the other lanes a little.
                group = self._group_of(key)
                self._ready_of(self._kind_of(lane[0])).add_first(group, key, self._rank(group))
            else:
                del self._lanes[key]

    def hold(self, key: Hashable, items: list[T]) -> None:
        """The key's run stopped early (an ordered task failed): `items` not started go back to its
        head, and the key stays busy, nothing of it ready, until `release` or `take_held`."""
        if items:
            self._put_back(key, items)
        self._busy.add(key)

    def _put_back(self, key: Hashable, items: list[T]) -> deque[T]:
        """Items taken and not started, at the head of their key's lane again (their order kept)."""
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = deque()
        if self._gate is not None:
            self._gate.returned(key, items)
        lane.extendleft(reversed(items))
        self._queued += len(items)
        return lane

    def take_held(self, key: Hashable) -> list[T]:
        """A held key's queued items, taken out in their order; the key is free again."""
        lane = self._lanes.get(key)
        mine = {id(item) for item in lane} if lane else set()
        taken = self.drop(lambda item: id(item) in mine) if mine else []
        self.release(key)
        return taken

    def count(self, which: Callable[[T], bool]) -> int:
        """Queued items matching `which`."""
        return sum(1 for lane in self._lanes.values() for item in lane if which(item))

    def drop(self, doomed: Callable[[T], bool]) -> list[T]:
        """Remove queued items for which `doomed` is true (e.g. of revoked partitions)."""
        removed: list[T] = []
        for key in list(self._lanes):
            lane = self._lanes[key]
            keep = deque(i for i in lane if not doomed(i))
            if len(keep) == len(lane):
                continue
            removed.extend(i for i in lane if doomed(i))
            self._lanes[key] = keep
            if not keep and key not in self._busy:
                del self._lanes[key]
        self._queued -= len(removed)
        # Rebuild the ready queues: a key whose head changed kind must move to the other queue. Parked
        # keys are let go and park again first, in their order (ahead of keys that were ready).
        parked = self._gate.forget(self._lanes) if self._gate is not None else []
        previous = [k for ready in self._ready.values() for k in ready.waiting()]
        self._ready = {}
        for key in dict.fromkeys([*parked, *previous, *self._lanes]):
            waiting = self._lanes.get(key)
            if waiting and key not in self._busy:
                self._mark_ready(key, waiting)
        return removed
