"""When a cron expression fires, in a time zone. Pure: no clock, no Kafka.

Ticks are whole epoch seconds. An expression matches local wall-clock times (cronsim iterates
naive datetimes, so it never sees a zone); each matching wall time becomes one instant here:
- a wall time that does not exist (the hour skipped when clocks spring forward) fires nothing;
- a wall time that exists twice (the hour repeated when clocks fall back) fires once, at its
  first occurrence (fold=0).
So every matching wall-clock time fires at most once, and the instants of the ticks increase
with their wall times, which lets the searches below walk wall time and filter by instant.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

_NEVER = "never fires"
_LOOKBACK = 6 * 3600  # seconds: longer than any repeated stretch of wall time a zone has


def zone(name: str) -> ZoneInfo:
    """The IANA zone `name`; ValueError naming it if unknown."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"unknown time zone {name!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"unknown time zone {name!r}") from None


@dataclass(frozen=True)
class Schedule:
    """A cron expression (5 fields, or 6 with seconds first) read in one time zone."""

    expression: str
    tz_name: str = "UTC"
    tz: ZoneInfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.expression, str):
            raise ValueError(f"cron expression must be a string, not {self.expression!r}")
        object.__setattr__(self, "tz", zone(self.tz_name))
        fields = self.expression.split()
        if len(fields) not in (5, 6):
            raise ValueError(f"cron expression {self.expression!r}: expected 5 fields (minute hour day month "
                             f"weekday) or 6 (seconds first), got {len(fields)}")
        try:
            CronSim(self.expression, datetime(2000, 1, 1))
        except CronSimError as exc:
            raise ValueError(f"cron expression {self.expression!r}: {str(exc).lower() or 'malformed'}") from None
        if self._first_wall_after(datetime(2000, 1, 1)) is None:
            raise ValueError(f"cron expression {self.expression!r} {_NEVER}")

    # -- wall time <-> instant -------------------------------------------------------------------
    def _wall(self, epoch: int) -> datetime:
        return datetime.fromtimestamp(epoch, self.tz).replace(tzinfo=None, fold=0)

    def _instant(self, wall: datetime) -> int | None:
        """The epoch second of a local wall time (its first occurrence), None if it does not exist."""
        local = wall.replace(tzinfo=self.tz, fold=0)
        epoch = int(local.timestamp())
        if self._wall(epoch) != wall:  # round trip fails: the wall time fell in a skipped hour
            return None
        return epoch

    def _first_wall_after(self, wall: datetime) -> datetime | None:
        try:
            return next(CronSim(self.expression, wall))
        except StopIteration:
            return None

    # -- searches ------------------------------------------------------------------------------------
    def after(self, epoch: int) -> Iterator[int]:
        """The ticks after `epoch`, in order (endless unless the expression stops matching)."""
        # Start from the wall time of `epoch`: a later wall time may still map to an instant at or
        # before it (inside a repeated hour), which the filter drops; an earlier one never maps after it.
        walls = CronSim(self.expression, self._wall(epoch))
        while True:
            try:
                wall = next(walls)
            except StopIteration:
                return
            instant = self._instant(wall)
            if instant is not None and instant > epoch:
                yield instant

    def next_after(self, epoch: int) -> int | None:
        """The first tick strictly after `epoch`, or None if there is none."""
        return next(self.after(epoch), None)

    def latest_at_or_before(self, epoch: int, not_before: int | None = None) -> int | None:
        """The last tick at or before `epoch` (and after `not_before`, if given), or None."""
        # Begin past any repeated hour `epoch` may sit in (its later wall times map before `epoch`);
        # wall times that map after `epoch` are dropped, and instants fall with wall time from there.
        # A zone's clocks go back by at most a few hours, and a repeated stretch is over within them.
        offset_now = datetime.fromtimestamp(epoch, self.tz).utcoffset() or timedelta(0)
        offset_before = datetime.fromtimestamp(epoch - _LOOKBACK, self.tz).utcoffset() or timedelta(0)
        slack = max(timedelta(0), offset_before - offset_now)
        start = self._wall(epoch) + slack + timedelta(seconds=1)
        walls = CronSim(self.expression, start, reverse=True)
        floor = None if not_before is None else self._wall(not_before) - timedelta(seconds=1)
        while True:
            try:
                wall = next(walls)
            except StopIteration:
                return None
            if floor is not None and wall < floor:
                return None
            instant = self._instant(wall)
            if instant is None or instant > epoch:
                continue
            if not_before is not None and instant <= not_before:
                return None
            return instant

    def between(self, after: int, upto: int, limit: int) -> list[int]:
        """The ticks in (after, upto], at most the `limit` first of them."""
        out: list[int] = []
        for tick in self.after(after):
            if tick > upto or len(out) >= limit:
                break
            out.append(tick)
        return out

    def local(self, epoch: int) -> datetime:
        """A tick as an aware datetime in the schedule's zone."""
        return datetime.fromtimestamp(epoch, self.tz)
