"""Completed offsets above the committed position, in the commit metadata (kqueue/core/completed.py)."""

import random

from kqueue.core.completed import METADATA_BUDGET, decode, encode


def test_completed_offsets_round_trip() -> None:
    completed = {101, 102, 105, 160, 1099}
    text = encode(100, completed | {50, 99})  # at or below the position: nothing to say about them
    assert decode(100, text) == completed
    assert len(text) <= METADATA_BUDGET


def test_nothing_completed_above_the_position_is_no_metadata() -> None:
    assert encode(100, []) == "" and encode(100, [3, 99]) == ""
    assert decode(100, "") == set()


def test_metadata_that_is_not_ours_or_damaged_means_run_again() -> None:
    assert decode(100, "some other client's note") == set()
    assert decode(100, "kq1:12:%%%not-base64") == set()
    assert decode(100, None) == set()


def test_too_much_to_say_keeps_what_fits_nearest_the_position() -> None:
    rng = random.Random(3)
    completed = {1000 + i for i in range(200_000) if rng.random() < 0.5}  # incompressible
    text = encode(1000, completed, budget=600)
    assert 0 < len(text) <= 600
    kept = decode(1000, text)
    assert kept and kept <= completed  # a prefix of the truth, never a wrong offset
    assert max(kept) < min(completed - kept)  # the offsets nearest the position are the ones kept
