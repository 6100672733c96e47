"""The order an --ordered replay writes dead letters in (pure)."""

from __future__ import annotations

from kqueue.control.dlq import DeadLetter, in_enqueue_order
from kqueue.core import names


def _letter(offset: int, enqueued: str | None, origin: str | None, failed: int = 5000) -> DeadLetter:
    headers = {names.H_ID: f"t{offset}", names.H_FAILED_AT: str(failed)}
    if enqueued is not None:
        headers[names.H_ENQUEUED_AT] = enqueued
    if origin is not None:
        headers[names.H_ORIGIN] = origin
    return DeadLetter("q.dlq", 0, offset, b"k", b"{}", headers)


def test_a_burst_in_one_millisecond_is_ordered_by_first_delivery() -> None:
    # Dead-lettered 10, 11, 12 while their tasks were delivered at 7, 3, 5 (the first went through a retry).
    letters = [_letter(10, "1000", "q/0/7"), _letter(11, "1000", "q/0/3"), _letter(12, "1000", "q/0/5")]
    assert [letter.offset for letter in in_enqueue_order(letters)] == [11, 12, 10]


def test_enqueue_time_first_then_failure_time_for_letters_that_do_not_say() -> None:
    letters = [_letter(1, "3000", "q/0/1"), _letter(2, "1000", "q/0/9"), _letter(3, None, None, failed=2000),
               _letter(4, "bad", "q/0/x", failed=500)]
    assert [letter.offset for letter in in_enqueue_order(letters)] == [4, 2, 3, 1]
