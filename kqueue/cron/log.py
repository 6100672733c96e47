"""The records of the cron topic, and what reading them teaches. Pure.

The topic (`_kqueue.cron`, one partition, compacted) holds two kinds of record per app:
- progress, key `progress NUL app NUL schedule`: every tick at or before `handled` is dealt with
  (fired, or skipped after an outage); `fired` is the last tick enqueued. Written only by the
  leader, in the transaction that enqueues the tick's task, so a tick and its progress are
  visible together or not at all.
- a scheduler's beat, key `member NUL app NUL member id`: alive since `since_ms`, last seen at
  `at_ms` (about once a second), whether it leads, whether it stopped. Written by every scheduler
  with a plain producer. The leader reads them to tell ticks missed while some scheduler lived
  (a hand-over: fire them all) from ticks missed while none did (an outage: `catch_up` decides).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

PROGRESS = "progress"
MEMBER = "member"
_SEP = "\0"


def progress_key(app: str, schedule: str) -> bytes:
    return _SEP.join((PROGRESS, app, schedule)).encode()


def member_key(app: str, member: str) -> bytes:
    return _SEP.join((MEMBER, app, member)).encode()


@dataclass(frozen=True)
class Progress:
    handled: int  # epoch s: every tick at or before it is dealt with
    fired: int | None  # epoch s of the last tick enqueued
    expression: str  # the schedule it was written under: a changed one starts afresh from now
    tz: str
    at_ms: int  # when it was written

    def encode(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()


@dataclass(frozen=True)
class Beat:
    member: str
    since_ms: int
    at_ms: int
    pid: int
    host: str
    leader: bool
    stopped: bool = False

    def encode(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()


def _decode(value: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(value)
    except (ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def decode_progress(value: bytes) -> Progress | None:
    data = _decode(value)
    try:
        return None if data is None else Progress(int(data["handled"]), None if data.get("fired") is None
                                                  else int(data["fired"]), str(data["expression"]),
                                                  str(data["tz"]), int(data["at_ms"]))
    except (KeyError, TypeError, ValueError):
        return None


def decode_beat(value: bytes) -> Beat | None:
    data = _decode(value)
    try:
        return None if data is None else Beat(str(data["member"]), int(data["since_ms"]), int(data["at_ms"]),
                                               int(data["pid"]), str(data["host"]), bool(data["leader"]),
                                               bool(data.get("stopped", False)))
    except (KeyError, TypeError, ValueError):
        return None


@dataclass
class CronLog:
    """One app's view of the cron topic, built record by record (the last of a key wins; a
    tombstone or a value that does not decode forgets it)."""

    app: str
    progress: dict[str, Progress] = field(default_factory=dict)
    members: dict[str, Beat] = field(default_factory=dict)

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        parts = key.decode("utf-8", "replace").split(_SEP)
        if len(parts) != 3 or parts[1] != self.app:
            return  # another app's record
        kind, _, name = parts
        if kind == PROGRESS:
            found = decode_progress(value) if value is not None else None
            if found is None:
                self.progress.pop(name, None)
            else:
                self.progress[name] = found
        elif kind == MEMBER:
            beat = decode_beat(value) if value is not None else None
            if beat is None:
                self.members.pop(name, None)
            else:
                self.members[name] = beat

    def leader(self, now_ms: int, silent_after_ms: int) -> Beat | None:
        """The scheduler whose latest beat says it leads, if it beat recently and did not stop."""
        leading = [b for b in self.members.values()
                   if b.leader and not b.stopped and now_ms - b.at_ms <= silent_after_ms]
        return max(leading, key=lambda b: b.at_ms, default=None)
