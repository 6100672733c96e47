"""Which priority lane's ready work runs next. Pure, not thread-safe (the executor's lock guards it).

Stride scheduling by items: each lane has a pass that grows by 1/weight per item it is served, and
the ready lane with the lowest pass goes next, so while several lanes have ready work each gets
items in proportion to its weight (6:3:1: of every ten items, six high, three normal, one low),
whatever the size of its runs. A lane that had nothing ready banks no credit meanwhile: when it has
work again its pass starts no lower than the pass of the last lane charged. KeyLanes charges only
while another lane has ready work too (alone, a lane shares with nobody, and the hot path of a
single busy lane skips the bookkeeping). Strict weights: always the highest lane with ready work.
"""

from __future__ import annotations

from collections.abc import Sequence

from kqueue.core.priority import LaneWeights


class LanePicker:
    __slots__ = ("_clock", "_passes", "_steps", "_strict")

    def __init__(self, weights: LaneWeights) -> None:
        self._strict = weights.strict
        self._steps = [1.0 / w for w in weights.weights]
        self._passes = [0.0] * len(weights.weights)
        self._clock = 0.0

    def arrive(self, rank: int) -> None:
        """Lane `rank` has ready work again after having none."""
        if self._passes[rank] < self._clock:
            self._passes[rank] = self._clock

    def pick(self, ready: Sequence[int]) -> int:
        """The lane to serve next among those with `ready[rank]` > 0 (at least one has). Ties go to
        the higher lane."""
        if self._strict:
            return next(rank for rank, count in enumerate(ready) if count)
        passes = self._passes
        best = -1
        for rank, count in enumerate(ready):
            if count and (best < 0 or passes[rank] < passes[best]):
                best = rank
        return best

    def charge(self, rank: int, items: int) -> None:
        """Lane `rank` was served `items` items."""
        self._clock = self._passes[rank]
        self._passes[rank] += items * self._steps[rank]
