"""When a commit may start, and `--commit-interval`'s value."""

from __future__ import annotations

import pytest

from kqueue.worker.checkpoint import COMMIT_INTERVAL, commit_due
from kqueue.worker.options import WorkerOptions, parse_commit_interval


def test_a_commit_is_due_once_the_interval_has_passed_since_the_last_was_prepared() -> None:
    assert not commit_due(0.0, 0.1)
    assert not commit_due(0.099, 0.1)
    assert commit_due(0.1, 0.1)
    assert commit_due(0.7, 0.1)  # the last one flew longer than the interval: the next goes at once


def test_the_default_interval_is_a_tenth_of_a_second_for_workers_and_the_cli() -> None:
    assert COMMIT_INTERVAL == 0.1  # Kafka Streams' exactly-once default; README has the chaos figures
    assert WorkerOptions(group="g").commit_interval == COMMIT_INTERVAL


@pytest.mark.parametrize(("text", "seconds"), [("0.1", 0.1), ("2", 2.0), (" 0.25 ", 0.25), ("1e-2", 0.01)])
def test_a_positive_number_of_seconds_is_taken(text: str, seconds: float) -> None:
    assert parse_commit_interval(text) == seconds


@pytest.mark.parametrize("text", ["0", "-0.5", "abc", "", "nan", "inf", "-inf", "0.1s"])
def test_anything_else_is_refused_in_one_line_naming_the_flag(text: str) -> None:
    with pytest.raises(ValueError, match=r"^--commit-interval must be a positive number of seconds") as caught:
        parse_commit_interval(text)
    assert "\n" not in str(caught.value)
