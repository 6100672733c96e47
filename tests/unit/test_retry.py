"""Retry decisions (DESIGN.md section 4): backoff, delay tiers, giving up, routing due tier records."""

from __future__ import annotations

import dataclasses
import math
import random

import pytest

from kqueue.core.names import DEFAULT_DELAY_TIERS
from kqueue.core.retry import (
    GiveUp,
    Move,
    RetryAt,
    RetryPolicy,
    Tiers,
    decide_retry,
    route_due_record,
    tier_due_at,
)

NOW = 1_700_000_000_000
DEFAULT_TIERS = Tiers.parse(DEFAULT_DELAY_TIERS)
NO_JITTER = RetryPolicy(jitter=0.0)


class FixedRandom(random.Random):
    """A Random whose random() always returns the same number (to pin the jitter)."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


# -- RetryPolicy.backoff --------------------------------------------------------------------------


def test_default_policy_is_one_second_doubling_capped_at_one_hour() -> None:
    policy = RetryPolicy()
    assert (policy.base, policy.factor, policy.cap) == (1.0, 2.0, 3600.0)
    assert 0 < policy.jitter <= 1


@pytest.mark.parametrize(
    ("attempt", "expected"),
    [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 16.0), (10, 512.0), (12, 2048.0), (13, 3600.0), (30, 3600.0)],
)
def test_backoff_without_jitter_is_exponential_and_capped(attempt: int, expected: float) -> None:
    assert NO_JITTER.backoff(attempt) == expected


@pytest.mark.parametrize(
    ("attempt", "expected"), [(1, 0.5), (2, 1.5), (3, 4.5), (4, 10.0), (5, 10.0)]
)
def test_backoff_custom_base_factor_cap(attempt: int, expected: float) -> None:
    policy = RetryPolicy(base=0.5, factor=3.0, cap=10.0, jitter=0.0)
    assert policy.backoff(attempt) == pytest.approx(expected)


def test_backoff_factor_one_is_constant() -> None:
    policy = RetryPolicy(base=7.0, factor=1.0, jitter=0.0)
    assert [policy.backoff(n) for n in range(1, 6)] == [7.0] * 5


@pytest.mark.parametrize("attempt", [0, -3])
def test_backoff_attempt_below_one_waits_base(attempt: int) -> None:
    assert RetryPolicy(base=3.0, jitter=0.0).backoff(attempt) == 3.0


def test_backoff_jitter_only_adds_and_stays_within_bound() -> None:
    policy = RetryPolicy()  # jitter 0.2
    for attempt in range(1, 16):
        floor = NO_JITTER.backoff(attempt)
        for seed in range(50):
            value = policy.backoff(attempt, random.Random(seed))
            assert floor <= value <= floor * (1 + policy.jitter), (attempt, seed, value)


def test_backoff_jitter_above_the_cap_never_below_it() -> None:
    policy = RetryPolicy(base=1.0, factor=2.0, cap=60.0, jitter=0.5)
    for seed in range(50):
        value = policy.backoff(20, random.Random(seed))
        assert 60.0 <= value <= 90.0


def test_backoff_jitter_is_exactly_rng_times_jitter_times_delay() -> None:
    policy = RetryPolicy(base=2.0, factor=2.0, cap=1000.0, jitter=0.25)
    draw = random.Random(42).random()
    assert policy.backoff(3, random.Random(42)) == pytest.approx(8.0 + draw * 0.25 * 8.0)


@pytest.mark.parametrize(("draw", "expected"), [(0.0, 16.0), (0.5, 17.6), (0.999999, 19.2)])
def test_backoff_with_pinned_draw(draw: float, expected: float) -> None:
    assert RetryPolicy().backoff(5, FixedRandom(draw)) == pytest.approx(expected, abs=1e-4)


def test_backoff_is_deterministic_for_a_seed_and_varies_across_seeds() -> None:
    policy = RetryPolicy()
    assert policy.backoff(4, random.Random(7)) == policy.backoff(4, random.Random(7))
    values = {policy.backoff(4, random.Random(seed)) for seed in range(20)}
    assert len(values) > 10  # the jitter really spreads retries out


def test_backoff_without_rng_uses_module_random_within_bounds() -> None:
    policy = RetryPolicy()
    for _ in range(50):
        assert 4.0 <= policy.backoff(3) <= 4.8


def test_backoff_zero_jitter_ignores_rng() -> None:
    assert NO_JITTER.backoff(3, FixedRandom(0.99)) == 4.0


def test_backoff_very_late_attempt_is_capped_not_an_overflow() -> None:
    # max_attempts is unbounded (App.task only checks >= 1); a task allowed thousands of attempts
    # must keep waiting `cap`, not crash the worker while it routes the failure.
    assert NO_JITTER.backoff(2000) == 3600.0
    assert 3600.0 <= RetryPolicy().backoff(5000, random.Random(1)) <= 4320.0


def test_retry_policy_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        RetryPolicy().base = 2.0  # type: ignore[misc]


# -- Tiers.parse ----------------------------------------------------------------------------------


def test_tiers_parse_defaults() -> None:
    assert DEFAULT_TIERS.seconds == (1.0, 5.0, 30.0, 120.0, 600.0, 3600.0, 21600.0)
    assert DEFAULT_TIERS.names == ("1s", "5s", "30s", "2m", "10m", "1h", "6h")


def test_tiers_parse_sorts_and_keeps_names_as_written() -> None:
    tiers = Tiers.parse(["6h", "1s", "90s", "30s", "1h", "500ms"])
    assert tiers.seconds == (0.5, 1.0, 30.0, 90.0, 3600.0, 21600.0)
    assert tiers.names == ("500ms", "1s", "30s", "90s", "1h", "6h")


def test_tiers_parse_accepts_any_sequence() -> None:
    assert Tiers.parse(("5s", "1s")).names == ("1s", "5s")
    assert Tiers.parse(["10m"]).seconds == (600.0,)


@pytest.mark.parametrize(
    ("tiers", "match"),
    [
        ([], "at least one"),
        ((), "at least one"),
        (["0s"], "longer than zero"),
        (["1s", "0"], "longer than zero"),
        (["-1"], "not a duration"),  # a sign is not part of a duration
        (["5s", "5s"], "duplicate"),
        (["60s", "1m"], "duplicate"),
        (["1s", "1h", "3600"], "duplicate"),
        (["1s", "soon"], "not a duration"),
    ],
)
def test_tiers_parse_errors(tiers: list[str], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Tiers.parse(tiers)


def test_tiers_seconds_of() -> None:
    assert DEFAULT_TIERS.seconds_of("30s") == 30.0
    assert DEFAULT_TIERS.seconds_of("6h") == 21600.0
    with pytest.raises(ValueError):
        DEFAULT_TIERS.seconds_of("7s")


# -- Tiers.for_wait -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wait", "tier"),
    [
        (-5.0, "1s"),
        (0.0, "1s"),
        (0.2, "1s"),
        (0.999, "1s"),
        (1.0, "1s"),
        (4.999, "1s"),
        (5.0, "5s"),
        (29.999, "5s"),
        (30.0, "30s"),
        (40.0, "30s"),
        (119.999, "30s"),
        (120.0, "2m"),
        (599.0, "2m"),
        (600.0, "10m"),
        (3599.999, "10m"),
        (3600.0, "1h"),
        (21599.0, "1h"),
        (21600.0, "6h"),
        (86400.0 * 30, "6h"),
    ],
)
def test_for_wait_default_tiers(wait: float, tier: str) -> None:
    assert DEFAULT_TIERS.for_wait(wait) == tier


def test_for_wait_single_tier() -> None:
    tiers = Tiers.parse(["10s"])
    assert [tiers.for_wait(w) for w in (0, 9.9, 10, 1e6)] == ["10s"] * 4


def test_for_wait_never_longer_than_the_wait_and_the_largest_that_fits() -> None:
    rng = random.Random(1234)
    for _ in range(500):
        wait = rng.uniform(1.0, 50_000.0)
        name = DEFAULT_TIERS.for_wait(wait)
        chosen = DEFAULT_TIERS.seconds_of(name)
        assert chosen <= wait
        assert all(s <= chosen or s > wait for s in DEFAULT_TIERS.seconds)


# -- decide_retry ---------------------------------------------------------------------------------


def test_decide_retry_reject_gives_up_even_with_attempts_left() -> None:
    decision = decide_retry(1, 10, NOW, DEFAULT_TIERS, NO_JITTER, reject=True)
    assert isinstance(decision, GiveUp)
    assert "reject" in decision.reason


def test_decide_retry_reject_wins_over_requested_delay() -> None:
    assert isinstance(decide_retry(1, 10, NOW, DEFAULT_TIERS, NO_JITTER, requested_delay=5.0, reject=True), GiveUp)


@pytest.mark.parametrize(("attempt", "max_attempts"), [(3, 3), (1, 1), (5, 3), (10, 10)])
def test_decide_retry_gives_up_when_attempts_are_used_up(attempt: int, max_attempts: int) -> None:
    decision = decide_retry(attempt, max_attempts, NOW, DEFAULT_TIERS, NO_JITTER)
    assert isinstance(decision, GiveUp)
    assert str(attempt) in decision.reason


def test_decide_retry_last_but_one_attempt_still_retries() -> None:
    decision = decide_retry(2, 3, NOW, DEFAULT_TIERS, NO_JITTER)
    assert isinstance(decision, RetryAt)
    assert decision.attempt == 3


@pytest.mark.parametrize(
    ("attempt", "wait_ms", "tier"),
    [(1, 1_000, "1s"), (2, 2_000, "1s"), (3, 4_000, "1s"), (4, 8_000, "5s"), (6, 32_000, "30s"),
     (8, 128_000, "2m"), (11, 1_024_000, "10m"), (13, 3_600_000, "1h"), (20, 3_600_000, "1h")],
)
def test_decide_retry_backoff_schedule(attempt: int, wait_ms: int, tier: str) -> None:
    decision = decide_retry(attempt, 100, NOW, DEFAULT_TIERS, NO_JITTER)
    assert decision == RetryAt(NOW + wait_ms, tier, attempt + 1)


def test_decide_retry_with_jitter_matches_backoff_for_the_same_seed() -> None:
    policy = RetryPolicy()
    for seed in range(30):
        wait = policy.backoff(4, random.Random(seed))
        decision = decide_retry(4, 5, NOW, DEFAULT_TIERS, policy, rng=random.Random(seed))
        assert isinstance(decision, RetryAt)
        assert decision.not_before_ms == NOW + math.ceil(round(wait * 1000, 6))  # rounded up, never early
        assert decision.not_before_ms >= NOW + 8_000  # jitter never makes a retry come early
        assert decision.tier == DEFAULT_TIERS.for_wait(wait)
        assert decision.attempt == 5


@pytest.mark.parametrize(
    ("requested", "wait_ms", "tier"),
    [(40.0, 40_000, "30s"), (0.0, 0, "1s"), (0.25, 250, "1s"), (5.0, 5_000, "5s"), (7200.0, 7_200_000, "1h"),
     (86400.0, 86_400_000, "6h")],
)
def test_decide_retry_requested_delay_wins_over_backoff(requested: float, wait_ms: int, tier: str) -> None:
    policy = RetryPolicy(base=600.0, jitter=0.5)  # would pick a very different time and tier
    decision = decide_retry(1, 3, NOW, DEFAULT_TIERS, policy, requested_delay=requested, rng=FixedRandom(0.9))
    assert decision == RetryAt(NOW + wait_ms, tier, 2)


def test_decide_retry_requested_delay_is_never_cut_short() -> None:
    # 1.001 * 1000 == 1000.9999999999999 in binary floating point; "never early" must still hold.
    decision = decide_retry(1, 3, NOW, DEFAULT_TIERS, NO_JITTER, requested_delay=1.001)
    assert isinstance(decision, RetryAt)
    assert decision.not_before_ms >= NOW + 1001


def test_decide_retry_uses_the_given_tiers() -> None:
    tiers = Tiers.parse(["10s", "1m"])
    assert decide_retry(1, 3, NOW, tiers, NO_JITTER) == RetryAt(NOW + 1000, "10s", 2)  # smallest if all longer
    assert decide_retry(1, 3, NOW, tiers, NO_JITTER, requested_delay=70) == RetryAt(NOW + 70_000, "1m", 2)


# -- route_due_record / tier_due_at ---------------------------------------------------------------


@pytest.mark.parametrize("not_before", [None, NOW, NOW - 1, NOW - 3_600_000])
def test_route_due_record_delivers_when_time_has_come(not_before: int | None) -> None:
    assert route_due_record(not_before, NOW, DEFAULT_TIERS) == Move("target")


@pytest.mark.parametrize(
    ("ahead_ms", "tier"),
    [(1, "1s"), (999, "1s"), (1_000, "1s"), (5_000, "5s"), (40_000, "30s"), (119_999, "30s"), (120_000, "2m"),
     (7 * 3_600_000, "6h")],
)
def test_route_due_record_re_tiers_the_remaining_time(ahead_ms: int, tier: str) -> None:
    move = route_due_record(NOW + ahead_ms, NOW, DEFAULT_TIERS)
    assert move == Move("tier", tier)


@pytest.mark.parametrize(
    ("appended", "seconds", "due"),
    [(1_000, 5.0, 6_000), (0, 0.5, 500), (NOW, 21600.0, NOW + 21_600_000), (NOW, 1.0, NOW + 1_000)],
)
def test_tier_due_at(appended: int, seconds: float, due: int) -> None:
    assert tier_due_at(appended, seconds) == due


def test_scheduled_record_is_never_delivered_early_and_at_most_one_small_tier_late() -> None:
    """Simulate the router with no lag: place, wait the tier, re-tier, ... until delivered."""
    rng = random.Random(99)
    smallest_ms = int(DEFAULT_TIERS.seconds[0] * 1000)
    for _ in range(300):
        wait = rng.choice([rng.uniform(0, 10), rng.uniform(0, 1_000), rng.uniform(0, 100_000)])
        not_before = NOW + int(wait * 1000)
        appended, tier, hops = NOW, DEFAULT_TIERS.for_wait(wait), 0
        while True:
            due = tier_due_at(appended, DEFAULT_TIERS.seconds_of(tier))
            move = route_due_record(not_before, due, DEFAULT_TIERS)
            if move.topic_kind == "target":
                break
            assert move.tier is not None
            appended, tier, hops = due, move.tier, hops + 1
            assert hops < 50
        assert not_before <= due <= not_before + smallest_ms
