"""Group-wide rate limits without a coordinator. Pure: no clock is read here, callers pass `now`.

A limit (`"100/s"`, `"6000/m"`, `"20/h"`) holds for a whole consumer group. Each worker takes the part
of it that matches its part of the limited queue's partitions (`group_share`): partitions are handed
out by Kafka, each to one member, so the parts add up to the limit whenever every partition is owned,
and a rebalance changes them (KIP-848 gives a partition to its next owner only after the last one let
it go, so the parts never add up to more). A worker spends its part through a `TokenBucket`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Final

# Seconds of a worker's rate its bucket may save up while it has nothing to spend them on: enough to
# absorb the executor's wake-up latency, small enough that the group's bursts stay within a tenth of
# a second's worth of the limit.
BURST_SECONDS: Final = 0.1
_UNITS: Final = {"s": 1.0, "m": 60.0, "h": 3600.0}
_WHOLE: Final = 1.0 - 1e-9  # a token, give or take float rounding (at its due time it must be there)
_RATE = re.compile(r"(\d+(?:\.\d+)?)\s*/\s*([smh])")


@dataclass(frozen=True)
class Rate:
    """`amount` tasks per `per` seconds."""

    amount: float
    per: float

    @property
    def per_second(self) -> float:
        return self.amount / self.per

    def __str__(self) -> str:
        unit = next(u for u, seconds in _UNITS.items() if seconds == self.per)
        return f"{self.amount:g}/{unit}"


def parse_rate(text: str) -> Rate:
    """`N/s`, `N/m` or `N/h` with N > 0 (decimals allowed). ValueError in one line naming the value."""
    match = _RATE.fullmatch(text.strip()) if isinstance(text, str) else None
    amount = float(match.group(1)) if match else 0.0
    if match is None or amount <= 0 or not math.isfinite(amount):
        raise ValueError(f"rate_limit {text!r} is not a rate: give N/s, N/m or N/h with N > 0 (e.g. '100/s')")
    return Rate(amount, _UNITS[match.group(2)])


def group_share(per_second: float, owned: int, total: int) -> float:
    """Tasks per second a worker may start: the limit times its part of the queue's partitions."""
    if total <= 0 or owned <= 0:
        return 0.0
    return per_second * min(owned, total) / total


def burst_of(per_second: float) -> float:
    """A bucket's capacity: BURST_SECONDS of its rate, at least one token (none at rate 0)."""
    return max(1.0, per_second * BURST_SECONDS) if per_second > 0 else 0.0


class TokenBucket:
    """One worker's part of a limit. A token starts one task. Tokens accrue at `rate` per second up to
    `capacity`, counting those reserved (taken for a task about to start, e.g. a key made ready), so
    saved-up and reserved tokens together never exceed a capacity's burst. A new bucket starts empty:
    a worker that joins does not add a burst to the group's rate."""

    __slots__ = ("capacity", "rate", "reserved", "stamp", "tokens")

    def __init__(self, rate: float = 0.0, now: float = 0.0) -> None:
        self.rate = rate
        self.capacity = burst_of(rate)
        self.tokens = 0.0
        self.reserved = 0
        self.stamp = now

    def refill(self, now: float) -> None:
        elapsed = now - self.stamp
        self.stamp = now
        room = self.capacity - self.reserved
        if elapsed > 0 and self.tokens < room:
            self.tokens = min(room, self.tokens + elapsed * self.rate)

    def available(self, now: float) -> bool:
        self.refill(now)
        return self.tokens >= _WHOLE

    def take(self, now: float) -> bool:
        """Spend a token on a task starting now, if one is there."""
        if not self.available(now):
            return False
        self.tokens -= 1.0
        return True

    def reserve(self, now: float) -> bool:
        """Set a token aside for a task that starts soon (`use` when it does, `refund` if it never does)."""
        if not self.take(now):
            return False
        self.reserved += 1
        return True

    def use(self) -> None:
        self.reserved -= 1

    def unuse(self) -> None:
        """A task that had started with a reserved token was handed back before it ran: reserved again."""
        self.reserved += 1

    def refund(self, reserved: bool) -> None:
        """A task that took a token will not start."""
        if reserved:
            self.reserved -= 1
        self.tokens += 1.0

    def next_token_at(self, now: float) -> float:
        """When a token will be there (`now` if one is; inf at rate 0 or while reserved ones fill it)."""
        self.refill(now)
        if self.tokens >= _WHOLE:
            return now
        if self.rate <= 0 or self.capacity - self.reserved < _WHOLE:
            return math.inf
        return now + (1.0 - self.tokens) / self.rate

    def retune(self, rate: float, now: float) -> None:
        """A new share (a rebalance): what accrued so far at the old rate is kept up to the new capacity;
        with more reserved than that, the bucket is in debt until its new rate pays it off."""
        self.refill(now)
        self.rate = rate
        self.capacity = burst_of(rate)
        self.tokens = min(self.tokens, self.capacity - self.reserved)
