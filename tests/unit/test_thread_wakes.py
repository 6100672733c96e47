"""How many idle sync threads the executor wakes for ready work (a pure decision)."""

from __future__ import annotations

import pytest

from kqueue.worker.executor import threads_to_wake


@pytest.mark.parametrize(("wanted", "busy", "stalled", "idle", "overdue", "wake"), [
    (1, 0, 0, 8, False, 1),  # cheap work, nobody on it: one thread
    (1, 1, 0, 7, False, 0),  # cheap work, one thread on it serves the queue: no GIL hand-offs for more
    (1, 1, 1, 7, False, 1),  # ... but that thread is stuck in a slow handler: another one
    (3, 4, 3, 4, False, 2),  # three wanted, one of four busy serves the queue
    (1, 1, 0, 7, True, 1),  # the work waited a whole tick untaken: one more thread
    (8, 2, 0, 6, False, 6),  # slow handlers: every idle thread
    (8, 8, 8, 0, True, 0),  # nobody idle to wake
])
def test_threads_to_wake(wanted: int, busy: int, stalled: int, idle: int, overdue: bool, wake: int) -> None:
    assert threads_to_wake(wanted, busy, stalled, idle, overdue) == wake
