"""Group-wide rate limits, the pure parts: parsing a rate, a worker's share of it, the token bucket."""

from __future__ import annotations

import math

import pytest

import kqueue
from kqueue.core.ratelimit import BURST_SECONDS, Rate, TokenBucket, burst_of, group_share, parse_rate


@pytest.mark.parametrize(("text", "per_second"), [
    ("100/s", 100.0), ("6000/m", 100.0), ("36/h", 0.01), (" 2.5 / s ", 2.5), ("1/m", 1 / 60), ("0.5/h", 0.5 / 3600),
])
def test_a_rate_is_n_per_second_minute_or_hour(text: str, per_second: float) -> None:
    assert parse_rate(text).per_second == pytest.approx(per_second)


def test_a_rate_reads_back_as_written() -> None:
    assert str(parse_rate("100/s")) == "100/s"
    assert str(parse_rate("2.5/m")) == "2.5/m"
    assert parse_rate("20/h") == Rate(20.0, 3600.0)


@pytest.mark.parametrize("text", ["100", "100/x", "0/s", "-1/s", "fast", "", "1e3/s", "/s", "100/sec", "100 per s",
                                  "nan/s", "10/s/s", "0.0/m"])
def test_a_malformed_rate_is_one_line_naming_it(text: str) -> None:
    with pytest.raises(ValueError, match=r"^rate_limit ") as caught:
        parse_rate(text)
    message = str(caught.value)
    assert repr(text) in message and "\n" not in message


def test_a_bad_rate_limit_fails_when_the_task_is_registered() -> None:
    app = kqueue.App("bad-rate", "127.0.0.1:1")
    with pytest.raises(ValueError, match="rate_limit '100/sec' is not a rate"):
        @app.task(queue="q", rate_limit="100/sec")
        def job(payload: object) -> None: ...
    assert app.tasks == {}


def test_a_registered_limit_is_kept_on_the_task() -> None:
    app = kqueue.App("rated", "127.0.0.1:1")

    @app.task(queue="q", rate_limit="30/m")
    def job(payload: object) -> None: ...

    assert job.rate_limit == Rate(30.0, 60.0)
    assert app.task(queue="q", name="other")(lambda payload: None).rate_limit is None


def test_a_worker_takes_its_part_of_the_partitions() -> None:
    assert group_share(200.0, 3, 12) == 50.0
    assert group_share(200.0, 0, 12) == 0.0
    assert group_share(200.0, 12, 12) == 200.0
    assert group_share(200.0, 3, 0) == 0.0  # count unknown: nothing rather than too much


@pytest.mark.parametrize("split", [(3, 3, 3, 3), (3, 3, 2, 2, 2), (12,), (5, 7), (1,) * 12])
def test_the_parts_add_up_to_the_limit_when_every_partition_is_owned(split: tuple[int, ...]) -> None:
    assert sum(group_share(200.0, owned, 12) for owned in split) == pytest.approx(200.0)


def test_a_bucket_saves_up_a_tenth_of_a_second_at_most() -> None:
    assert burst_of(50.0) == 50.0 * BURST_SECONDS
    assert burst_of(2.0) == 1.0  # at least one token, or a slow limit could never start anything
    assert burst_of(0.0) == 0.0


def test_a_new_bucket_starts_empty_and_fills_at_its_rate() -> None:
    bucket = TokenBucket(50.0, now=10.0)
    assert not bucket.take(10.0)  # a worker that joins adds no burst to the group
    assert bucket.next_token_at(10.0) == pytest.approx(10.02)
    assert not bucket.take(10.019)
    assert bucket.take(10.02)
    assert not bucket.take(10.02)


def test_an_idle_bucket_holds_its_capacity_only() -> None:
    bucket = TokenBucket(50.0, now=0.0)
    bucket.refill(100.0)
    taken = 0
    while bucket.take(100.0):
        taken += 1
    assert taken == 5  # 0.1 s of 50/s


def test_taking_at_each_next_token_time_runs_at_the_rate() -> None:
    bucket = TokenBucket(50.0, now=0.0)
    now, starts = 0.0, 0
    while now < 10.0:
        now = bucket.next_token_at(now)
        if now < 10.0:
            assert bucket.take(now)
            starts += 1
    assert starts in (499, 500)


def test_reserved_tokens_count_against_the_capacity() -> None:
    bucket = TokenBucket(50.0, now=0.0)
    bucket.refill(1.0)
    assert all(bucket.reserve(1.0) for _ in range(5))
    bucket.refill(2.0)
    assert not bucket.available(2.0)  # five set aside: nothing more saves up
    assert bucket.next_token_at(2.0) == math.inf  # until one of them starts
    bucket.use()
    assert bucket.next_token_at(2.0) == pytest.approx(2.02)
    bucket.refund(reserved=True)  # a reserved task that will not start gives its token back
    assert bucket.available(2.0)


def test_a_bucket_at_rate_zero_never_has_a_token() -> None:
    bucket = TokenBucket(0.0, now=0.0)
    assert bucket.next_token_at(0.0) == math.inf
    assert not bucket.take(1_000.0)


def test_a_smaller_share_caps_what_was_saved_and_keeps_what_was_reserved_as_debt() -> None:
    bucket = TokenBucket(100.0, now=0.0)
    bucket.refill(1.0)  # 10 saved
    for _ in range(3):
        assert bucket.reserve(1.0)
    bucket.retune(20.0, 1.0)  # capacity 2, of which 3 are reserved: one in debt
    assert bucket.tokens == pytest.approx(-1.0)
    assert bucket.next_token_at(1.0) == math.inf  # reserved ones fill the capacity
    bucket.use()
    bucket.use()
    assert bucket.next_token_at(1.0) == pytest.approx(1.1)  # the debt is paid off at the new rate first


def test_a_larger_share_speeds_up_from_now() -> None:
    bucket = TokenBucket(10.0, now=0.0)
    bucket.retune(100.0, 0.05)  # 0.5 tokens so far at the old rate
    assert bucket.next_token_at(0.05) == pytest.approx(0.055)
