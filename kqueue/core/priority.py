"""Priorities: which lane a task goes to, and how a worker weighs the lanes. Pure.

A queue has three lanes, `Q.high`, `Q`, `Q.low` (core/names.py), ranked 0, 1, 2. A task's priority
is a lane name or an integer 0-9 (the scale of RabbitMQ and Celery-on-RabbitMQ: higher is more
urgent); `lane_of` maps both onto the lanes, for the SDK, the CLI and the API alike.

A worker weighs the lanes (`--weights`): by default 6:3:1, so while a higher lane has backlog a lower
one still gets its share and never starves; `strict` runs a lower lane only when the higher ones
have nothing waiting.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from kqueue.core import names

LANES: Final = names.PRIORITIES  # ("high", "normal", "low"): a lane's rank is its index
NORMAL_RANK: Final = LANES.index("normal")
# Integer priorities 0-9, higher = more urgent: 7-9 high, 3-6 normal (5, the middle, included), 0-2 low.
HIGH_FROM: Final = 7
NORMAL_FROM: Final = 3
MAX_WEIGHT: Final = 1000


def lane_of(priority: str | int) -> str:
    """The lane of a priority: "high" | "normal" | "low", or an integer 0-9 (also as a digit string,
    as the CLI and JSON bodies carry it): 7-9 high, 3-6 normal, 0-2 low. ValueError names a bad one."""
    if isinstance(priority, str):
        text = priority.strip()
        if text in LANES:
            return text
        if not (len(text) == 1 and text.isascii() and text.isdigit()):
            raise ValueError(f"unknown priority {priority!r}: use high, normal, low or an integer 0-9 (9 most urgent)")
        priority = int(text)
    if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 9:
        raise ValueError(f"unknown priority {priority!r}: use high, normal, low or an integer 0-9 (9 most urgent)")
    if priority >= HIGH_FROM:
        return "high"
    return "normal" if priority >= NORMAL_FROM else "low"


@dataclass(frozen=True)
class LaneWeights:
    """How a worker shares its handlers among the lanes while several have work: `weights[rank]`
    items of each lane in turn, or `strict`: a lower lane only while the higher ones have none."""

    weights: tuple[int, int, int] = (6, 3, 1)
    strict: bool = False

    def describe(self) -> str:
        if self.strict:
            return "strict"
        return ",".join(f"{lane}={weight}" for lane, weight in zip(LANES, self.weights, strict=True))


DEFAULT_WEIGHTS: Final = LaneWeights()
STRICT: Final = LaneWeights(strict=True)


def parse_weights(text: str) -> LaneWeights:
    """`high=6,normal=3,low=1` (lanes left out keep their default weight) or `strict`.
    ValueError with one line naming the value."""
    spec = text.strip()
    if spec.lower() == "strict":
        return STRICT
    where = f"--weights {text!r}"
    if not spec:
        raise ValueError(f"{where} is empty: give high=N,normal=N,low=N or strict")
    weights = dict(zip(LANES, DEFAULT_WEIGHTS.weights, strict=True))
    named: set[str] = set()
    for part in spec.split(","):
        lane, sep, value = (piece.strip() for piece in part.partition("="))
        if not sep or lane not in LANES:
            raise ValueError(f"{where}: {part.strip()!r} is not lane=weight with lane high, normal or low "
                             "(or give strict)")
        if lane in named:
            raise ValueError(f"{where}: {lane} is given twice")
        if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= MAX_WEIGHT:
            raise ValueError(f"{where}: the weight of {lane} must be a whole number from 1 to {MAX_WEIGHT}, "
                             f"not {value!r} (for a lane that waits until the higher ones are empty, use strict)")
        named.add(lane)
        weights[lane] = int(value)
    return LaneWeights((weights["high"], weights["normal"], weights["low"]))


def lane_ranks(queues: Iterable[str], prefix: str = "") -> dict[str, int]:
    """The rank of every lane topic of `queues` (0 high, 1 normal, 2 low). By topic, not by name
    suffix: a queue may itself be called `x.high`."""
    return {names.lane_topic(queue, lane, prefix): rank for queue in queues for rank, lane in enumerate(LANES)}


def partition_rank(ranks: Mapping[str, int]) -> Callable[[Hashable], int]:
    """The lane of a `(topic, partition)` (the executor's groups): its topic's rank, else normal."""

    def rank(partition: Hashable) -> int:
        return ranks.get(partition[0], NORMAL_RANK) if isinstance(partition, tuple) else NORMAL_RANK

    return rank


def held_share(weights: LaneWeights, rank: int, waiting: Sequence[bool], limit: int) -> int | None:
    """Unsettled tasks lane `rank` may hold in a worker whose bound is `limit` while a higher lane has
    work waiting (`waiting[r]`: lane r has tasks fetched and not started, or not fetched yet): its
    weight's part of the bound among those lanes and itself; 0 under strict weights. None when no
    higher lane waits: then it is not held at all."""
    higher = [r for r in range(rank) if waiting[r]]
    if not higher:
        return None
    if weights.strict:
        return 0
    total = weights.weights[rank] + sum(weights.weights[r] for r in higher)
    return max(1, limit * weights.weights[rank] // total)


def priority_turn(unsettled: int, share: int | None, paused: bool) -> bool | None:
    """Whether to pause a lane's partitions for priority (True), resume them (False) or leave them:
    paused at the share, resumed at half of it (so a lane does not flap at the edge) or when no higher
    lane waits; with a share of 0 (strict) paused for as long as a higher lane waits."""
    if share is None:
        return False if paused else None
    if share == 0:
        return None if paused else True
    if unsettled >= share and not paused:
        return True
    if unsettled <= share // 2 and paused:
        return False
    return None
