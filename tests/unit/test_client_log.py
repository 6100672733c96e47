"""librdkafka's reconnect floods are damped to one line per kind per window, with a count."""

from kqueue.transport.client_log import RepeatDamper


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_first_line_of_a_kind_passes_and_repeats_are_counted_until_the_window_ends() -> None:
    clock = Clock()
    damper = RepeatDamper(window=60, clock=clock)
    first = "FAIL [rdkafka#consumer-1]: Connect to 127.0.0.1:33092 failed (after 3ms in state CONNECT)"
    assert damper.admit(first) == first
    for n in range(200):
        clock.now += 0.1
        assert damper.admit(f"FAIL [rdkafka#consumer-2]: Connect to 127.0.0.1:33092 failed (after {n}ms in "
                            "state CONNECT)") is None
    assert damper.admit("ADDOFFSETS: Failed to add offsets: Local: Timed out") is not None  # another kind
    clock.now = 61
    again = damper.admit(first)
    assert again is not None and again.endswith("(and 200 more like it in the last 60s)")
    assert damper.admit(first) is None  # a new window began
