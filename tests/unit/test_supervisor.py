"""When the supervisor restarts a dead child (the loop itself is exercised through the CLI tests)."""

from kqueue.worker.supervisor import RESTART_BACKOFF, restart_delay


def test_a_dead_child_is_restarted_at_once_then_later_while_it_keeps_dying_young() -> None:
    delays = [restart_delay(n) for n in range(8)]
    assert delays[0] == 0.0  # at once, under the same instance id
    assert delays == sorted(delays) and delays[-1] == RESTART_BACKOFF[-1] == 10.0
