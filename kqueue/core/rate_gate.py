"""Rate waits in the key lanes (core/lanes.py): which keys wait for a token, and in what order they get
one. Not thread-safe (the executor's lock guards it); the clock is passed in, so tests drive it.

A key whose next task is of a limited type becomes ready only with that task's tokens set aside
(`TokenBucket.reserve`, one per limit the task is under: its type's, later its queue's too); without,
the key parks on the bucket that had none, and its later tasks wait behind it, so a key's order holds.
Runners never see a parked key, so a limited type waiting blocks no other type, key or partition.
Parked keys of a bucket get tokens in turn across partitions (a key from each in rotation), and a key
that becomes ready while others wait on its bucket parks behind them. A later task of a run (the same
key's next ones, taken together) starts with the run only if a token is there and nobody waits for it.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Hashable, Mapping
from typing import Generic, TypeVar

from kqueue.core.ratelimit import TokenBucket

T = TypeVar("T")
Limits = tuple[TokenBucket, ...]


class _Parked:
    """Keys waiting on one bucket, per group (partition); the groups take turns."""

    __slots__ = ("groups", "turns")

    def __init__(self) -> None:
        self.groups: dict[Hashable, deque[Hashable]] = {}
        self.turns: deque[Hashable] = deque()

    def add(self, group: Hashable, key: Hashable) -> None:
        keys = self.groups.get(group)
        if keys is None:
            keys = self.groups[group] = deque()
            self.turns.append(group)
        keys.append(key)

    def pop(self) -> tuple[Hashable, Hashable]:
        group = self.turns.popleft()
        keys = self.groups[group]
        key = keys.popleft()
        if keys:
            self.turns.append(group)
        else:
            del self.groups[group]
        return group, key

    def in_order(self) -> list[Hashable]:
        return [key for group in self.turns for key in self.groups[group]]


class RateGate(Generic[T]):
    def __init__(self, limits_of: Callable[[T], Limits], clock: Callable[[], float]) -> None:
        self._limits_of = limits_of  # the buckets an item needs a token of (empty: not limited)
        self._clock = clock
        self._parked: dict[TokenBucket, _Parked] = {}  # only buckets with keys waiting
        self._waits_on: dict[Hashable, tuple[Hashable, TokenBucket]] = {}  # parked key -> (group, bucket)
        self._paid: dict[Hashable, T] = {}  # ready key -> its head item, whose tokens are set aside
        self.items = 0  # items of parked keys (the parked heads and what waits behind them)
        self.by_group: dict[Hashable, int] = {}

    @property
    def parked_keys(self) -> int:
        return len(self._waits_on)

    @property
    def waiting_buckets(self) -> int:
        return len(self._parked)

    def admit(self, key: Hashable, group: Hashable, lane: deque[T]) -> bool:
        """Whether the key may be ready, its lane's head next: True when the head is not limited or
        its tokens are set aside now; False: the key is parked until they are."""
        head = lane[0]
        if self._paid.get(key) is head:
            return True
        limits = self._limits_of(head)
        if not limits:
            return True
        now = self._clock()
        blocked = self._blocking(limits, now, None)
        if blocked is None:
            self._reserve(key, head, limits, now)
            return True
        self._park(key, group, len(lane), blocked)
        return False

    def _blocking(self, limits: Limits, now: float, turn: TokenBucket | None) -> TokenBucket | None:
        """The first bucket that holds the item back: no token, or keys waiting on it already (other
        than on `turn`, the bucket now handing its tokens out)."""
        for bucket in limits:
            if (bucket is not turn and bucket in self._parked) or not bucket.available(now):
                return bucket
        return None

    def _reserve(self, key: Hashable, head: T, limits: Limits, now: float) -> None:
        for bucket in limits:
            bucket.reserve(now)
        self._paid[key] = head

    def _park(self, key: Hashable, group: Hashable, size: int, bucket: TokenBucket) -> None:
        parked = self._parked.get(bucket)
        if parked is None:
            parked = self._parked[bucket] = _Parked()
        parked.add(group, key)
        self._waits_on[key] = (group, bucket)
        self._count(group, size)

    def _count(self, group: Hashable, change: int) -> None:
        self.items += change
        left = self.by_group.get(group, 0) + change
        if left:
            self.by_group[group] = left
        else:
            self.by_group.pop(group, None)

    def pushed(self, key: Hashable) -> None:
        """One more item queued behind `key`: counted as waiting if the key is parked."""
        where = self._waits_on.get(key)
        if where is not None:
            self._count(where[0], 1)

    def started(self, key: Hashable, head: T) -> None:
        """A runner took the key's head: its tokens set aside are spent."""
        if self._paid.pop(key, None) is head:
            for bucket in self._limits_of(head):
                bucket.use()

    def follows(self, item: T) -> bool:
        """Whether a later item of a run may start with it: not limited, or a token is there for it now
        and no key waits on its buckets."""
        limits = self._limits_of(item)
        if not limits:
            return True
        now = self._clock()
        if self._blocking(limits, now, None) is not None:
            return False
        for bucket in limits:
            bucket.take(now)
        return True

    def returned(self, key: Hashable, items: list[T]) -> None:
        """A run handed back before it started (it is the key's head again): the head's tokens are set
        aside again, the later items' go back to their buckets."""
        for index, item in enumerate(items):
            limits = self._limits_of(item)
            if index == 0 and limits:
                for bucket in limits:
                    bucket.unuse()
                self._paid[key] = item
            else:
                for bucket in limits:
                    bucket.refund(reserved=False)

    def unpark(self, lanes: Mapping[Hashable, deque[T]]) -> list[Hashable]:
        """Parked keys whose tokens are there now (set aside for their heads), to be made ready."""
        ready: list[Hashable] = []
        if not self._parked:
            return ready
        now = self._clock()
        for bucket in list(self._parked):
            parked = self._parked[bucket]
            while bucket.available(now):
                group, key = parked.pop()
                del self._waits_on[key]
                lane = lanes[key]
                self._count(group, -len(lane))
                limits = self._limits_of(lane[0])
                blocked = self._blocking(limits, now, bucket)
                if blocked is None:
                    self._reserve(key, lane[0], limits, now)
                    ready.append(key)
                else:
                    self._park(key, group, len(lane), blocked)  # its turn on another limit
                if not parked.turns:
                    del self._parked[bucket]
                    break
        return ready

    def next_due(self) -> float:
        """When a parked key can next get its token (monotonic seconds; inf: none waits, or never)."""
        if not self._parked:
            return math.inf
        now = self._clock()
        return min(bucket.next_token_at(now) for bucket in self._parked)

    def waiting_in(self, which: Callable[[Hashable], bool]) -> int:
        """Items of parked keys in the groups for which `which` is true."""
        return sum(count for group, count in self.by_group.items() if which(group))

    def forget(self, lanes: Mapping[Hashable, deque[T]]) -> list[Hashable]:
        """Before the lanes are rebuilt (items were dropped): tokens set aside for heads now gone go
        back, and every parked key is let go (returned in their order: the rebuild parks them again)."""
        for key, head in list(self._paid.items()):
            lane = lanes.get(key)
            if not lane or lane[0] is not head:
                del self._paid[key]
                for bucket in self._limits_of(head):
                    bucket.refund(reserved=True)
        keys = [key for parked in self._parked.values() for key in parked.in_order()]
        self._parked.clear()
        self._waits_on.clear()
        self.items = 0
        self.by_group.clear()
        return keys
