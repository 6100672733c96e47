"""The app's cron schedules for the REST API: next fire and last fired tick of each, and the
schedulers alive (the leader first). The cron topic is read at most once per TTL (pages poll it)."""

from __future__ import annotations

import threading
import time
from typing import Any

from kqueue.cron.listing import live_schedulers, read_cron_log, schedule_rows
from kqueue.sdk.app import App

CRON_TTL = 2.0  # seconds


class CronView:
    def __init__(self, app: App) -> None:
        self.app = app
        self._cached: tuple[float, dict[str, Any]] | None = None
        self._lock = threading.Lock()

    def listing(self) -> dict[str, Any]:
        with self._lock:
            if self._cached is not None and time.monotonic() - self._cached[0] < CRON_TTL:
                return self._cached[1]
            out = self._read()
            self._cached = (time.monotonic(), out)
            return out

    def _read(self) -> dict[str, Any]:
        if not self.app.cron_entries:  # nothing to read Kafka for
            return {"schedules": [], "schedulers": []}
        log = read_cron_log(self.app)
        now = time.time()
        return {
            "schedules": [{"name": r.name, "queue": r.queue, "task": r.task, "expression": r.expression,
                           "tz": r.tz, "catch_up": r.catch_up,
                           "next_fire_ms": r.next_fire * 1000 if r.next_fire is not None else None,
                           "last_fired_ms": r.last_fired * 1000 if r.last_fired is not None else None}
                          for r in schedule_rows(self.app, now, log)],
            "schedulers": [{"member": b.member, "host": b.host, "pid": b.pid, "leader": b.leader,
                            "since_ms": b.since_ms, "at_ms": b.at_ms} for b in live_schedulers(log, int(now * 1000))],
        }
