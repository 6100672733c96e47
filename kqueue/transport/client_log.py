"""librdkafka's log lines, through Python logging and without floods.

While a broker is away the client logs every reconnect attempt (hundreds of lines a minute, each
with a fresh millisecond count). `RepeatDamper` lets the first line of a kind through, counts the
same kind for a while, then lets one through again saying how many it held back. Pure (clock given).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable

from kqueue.transport.security import scrub

_VARYING = re.compile(r"\d+")  # millisecond counts, client numbers, ports: the same line otherwise
REPEAT_WINDOW = 60.0


def line_kind(message: str) -> str:
    return _VARYING.sub("#", message)


class RepeatDamper:
    def __init__(self, window: float = REPEAT_WINDOW, clock: Callable[[], float] = time.monotonic) -> None:
        self._window = window
        self._clock = clock
        self._seen: dict[str, tuple[float, int]] = {}  # kind -> (when last let through, held back since)

    def admit(self, message: str) -> str | None:
        """The line to log (with a count of those held back), or None to hold it back."""
        kind = line_kind(message)
        now = self._clock()
        seen = self._seen.get(kind)
        if seen is not None and now - seen[0] < self._window:
            self._seen[kind] = (seen[0], seen[1] + 1)
            return None
        if len(self._seen) > 1000:  # kinds are few; never grow without bound
            self._seen.clear()
        held = seen[1] if seen is not None else 0
        self._seen[kind] = (now, 0)
        return f"{message} (and {held} more like it in the last {self._window:.0f}s)" if held else message


_kafka_log = logging.getLogger("kqueue.kafka")
# librdkafka's own levels are loud for a queue's purposes: its warnings are mostly transient
# (a coordinator moving, a broker restarting) and the client retries them. One level down each.
_QUIETER = {logging.CRITICAL: logging.WARNING, logging.ERROR: logging.WARNING, logging.WARNING: logging.INFO}


class ClientLog:
    """Where confluent-kafka sends librdkafka's log lines (instead of raw `%4|...` lines on stderr)."""

    def __init__(self) -> None:
        self._damper = RepeatDamper()

    def log(self, level: int, message: str, *args: object) -> None:
        text = scrub(message % args if args else message)  # no configured secret leaves in a log line
        line = self._damper.admit(text)
        if line is not None:
            _kafka_log.log(_QUIETER.get(level, logging.DEBUG), "%s", line)
