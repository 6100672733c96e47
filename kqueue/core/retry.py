"""Retry decisions: backoff, which delay tier, when to give up. Pure (the clock and randomness are passed in).

Attempt n failed -> wait backoff(n) (exponential, capped, jittered upwards only, never shorter than
asked) -> the record goes to the largest tier not longer than the wait (the smallest if none is).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from kqueue.core.durations import parse_duration


def ms_not_shorter(seconds: float) -> int:
    """Milliseconds rounded up, so float noise (1.001 * 1000 = 1000.99..) never makes a wait shorter."""
    return math.ceil(round(seconds * 1000, 6))


@dataclass(frozen=True)
class RetryPolicy:
    base: float = 1.0  # seconds before the 2nd attempt
    factor: float = 2.0
    cap: float = 3600.0
    jitter: float = 0.2  # up to +20%, so retries of many tasks spread out but never come early

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after attempt `attempt` (1-based) failed."""
        try:
            delay = min(self.cap, self.base * self.factor ** max(0, attempt - 1))
        except OverflowError:  # attempt 1025 with factor 2: far past any cap
            delay = self.cap
        spread = (rng or random).random() * self.jitter * delay
        return delay + spread


@dataclass(frozen=True)
class Tiers:
    """Delay tiers in seconds, shortest first, with their topic-name suffixes."""

    seconds: tuple[float, ...]
    names: tuple[str, ...]

    @classmethod
    def parse(cls, tiers: Sequence[str]) -> Tiers:
        if not tiers:
            raise ValueError("at least one delay tier is needed")
        pairs = sorted((parse_duration(t), t) for t in tiers)
        if any(s <= 0 for s, _ in pairs):
            raise ValueError("delay tiers must be longer than zero")
        if len({s for s, _ in pairs}) != len(pairs):
            raise ValueError(f"duplicate delay tiers in {list(tiers)}")
        return cls(tuple(s for s, _ in pairs), tuple(n for _, n in pairs))

    def for_wait(self, wait: float) -> str:
        """The largest tier not longer than `wait`, or the smallest tier if all are longer."""
        chosen = self.names[0]
        for seconds, name in zip(self.seconds, self.names, strict=True):
            if seconds <= wait:
                chosen = name
            else:
                break
        return chosen

    def seconds_of(self, name: str) -> float:
        return self.seconds[self.names.index(name)]


@dataclass(frozen=True)
class RetryAt:
    not_before_ms: int
    tier: str
    attempt: int  # the attempt number the retry will be


@dataclass(frozen=True)
class GiveUp:
    reason: str


def retries(attempt: int, max_attempts: int, reject: bool = False) -> bool:
    """Whether a failed attempt is tried again (decide_retry's first question)."""
    return not reject and attempt < max_attempts


def decide_retry(
    attempt: int,
    max_attempts: int,
    now_ms: int,
    tiers: Tiers,
    policy: RetryPolicy,
    requested_delay: float | None = None,
    reject: bool = False,
    rng: random.Random | None = None,
) -> RetryAt | GiveUp:
    """What happens after attempt `attempt` failed."""
    if not retries(attempt, max_attempts, reject):
        return GiveUp("rejected by the handler" if reject else f"gave up after {attempt} attempt(s)")
    wait = requested_delay if requested_delay is not None else policy.backoff(attempt, rng)
    not_before = now_ms + ms_not_shorter(wait)
    return RetryAt(not_before, tiers.for_wait(wait), attempt + 1)


@dataclass(frozen=True)
class Move:
    """Where the delay router sends a due tier record."""

    topic_kind: str  # "target" or "tier"
    tier: str | None = None


def route_due_record(not_before_ms: int | None, now_ms: int, tiers: Tiers) -> Move:
    """A tier record whose tier delay has passed: deliver it, or wait again in the tier that fits."""
    if not_before_ms is None or not_before_ms <= now_ms:
        return Move("target")
    return Move("tier", tiers.for_wait((not_before_ms - now_ms) / 1000))


def tier_due_at(appended_ms: int, tier_seconds: float) -> int:
    """Every record in a tier waits exactly the tier's delay after it was appended."""
    return appended_ms + int(tier_seconds * 1000)
