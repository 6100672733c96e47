"""Liveness and readiness: what a worker's last tick says, and the two decisions made from it.

- live: the poll loop is turning. Its last tick is recent (a starting worker gets the same bound
  to reach its first tick). Failing means stuck for good: restart it.
- ready: it has joined its group, Kafka answered lately, and commits are not failing. Failing
  means "not doing its job right now" (an outage, a drain, not in the group yet), which a restart
  would not fix.
The decisions are plain functions of a `Beat`, so the supervisor of `--processes` makes the same
ones from its children's beat files.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from kqueue.sdk.middleware import Middleware, TickEvent

LIVENESS_TIMEOUT = 120.0  # a revoke may wait out the grace and a stuck commit 60 s: both are alive
COMMITS_FAILING_UNREADY = 10.0
BROKER_SILENT_UNREADY = 15.0  # lag reads run every 5 s: three missed answers


@dataclass(frozen=True)
class Beat:
    """A worker's state at its last tick (wall-clock seconds, comparable across processes)."""

    at: float
    member_id: str
    commits_failing_for: float
    broker_answered_at: float | None
    stopping: bool


Verdict = tuple[bool, str]


def liveness(beat: Beat | None, started_at: float, now: float, bound: float = LIVENESS_TIMEOUT) -> Verdict:
    if beat is None:
        age = now - started_at
        return (age <= bound, f"starting for {age:.0f}s" if age <= bound else f"no loop turn in {age:.0f}s of start")
    age = now - beat.at
    if age > bound:
        return False, f"the poll loop has not turned for {age:.0f}s (bound {bound:.0f}s)"
    return True, f"the poll loop turned {age:.1f}s ago"


def readiness(beat: Beat | None, now: float, bound: float = LIVENESS_TIMEOUT) -> Verdict:
    if beat is None:
        return False, "starting"
    if now - beat.at > bound:
        return False, "the poll loop is stuck"
    if beat.stopping:
        return False, "stopping"
    if not beat.member_id:
        return False, "not in the consumer group yet"
    if beat.commits_failing_for >= COMMITS_FAILING_UNREADY:
        return False, f"commits failing for {beat.commits_failing_for:.0f}s"
    if beat.broker_answered_at is None or now - beat.broker_answered_at > BROKER_SILENT_UNREADY:
        return False, "Kafka has not answered lately"
    return True, "in the group, Kafka answers, commits go through"


class HealthMiddleware(Middleware):
    """Records each tick as a `Beat`; with `beat_file` also writes it there (for a supervisor)."""

    def __init__(self, broker_answered_at: Callable[[], float | None], beat_file: Path | None = None,
                 liveness_timeout: float = LIVENESS_TIMEOUT) -> None:
        self._answered = broker_answered_at
        self._beat_file = beat_file
        self.liveness_timeout = liveness_timeout
        self.started_at = time.time()
        self.beat: Beat | None = None

    def on_tick(self, event: TickEvent) -> None:
        now = time.time()
        answered = self._answered()
        # The probe keeps monotonic time; turn it into wall time for the beat.
        answered_wall = None if answered is None else now - (time.monotonic() - answered)
        self.beat = Beat(now, event.member_id, event.commits_failing_for, answered_wall, event.stopping)
        if self._beat_file is not None:
            write_beat(self._beat_file, self.beat)

    def live(self) -> Verdict:
        return liveness(self.beat, self.started_at, time.time(), self.liveness_timeout)

    def ready(self) -> Verdict:
        return readiness(self.beat, time.time(), self.liveness_timeout)


def write_beat(path: Path, beat: Beat) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(asdict(beat)))
    os.replace(temporary, path)  # readers never see half a file


def read_beat(path: Path) -> Beat | None:
    try:
        return Beat(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None
