"""The status view's reader restarts with a backoff (pure parts of view/process.py)."""

from __future__ import annotations

from kqueue.view.process import RESTART_MAX, ReaderHealth, describe_exit, restart_delay


def test_restarts_back_off_doubling_up_to_the_cap() -> None:
    assert [restart_delay(n) for n in range(1, 9)] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    assert restart_delay(1000) == RESTART_MAX


def test_an_exit_is_described_for_a_person() -> None:
    assert describe_exit(-9) == "killed by SIGKILL"
    assert describe_exit(1) == "exit code 1"
    assert describe_exit(-200) == "killed by signal 200"


def test_only_a_reading_reader_is_ready() -> None:
    assert ReaderHealth("reading", 0, "").ready
    assert not any(ReaderHealth(state, 1, "").ready for state in ("starting", "restarting", "stopped"))
