"""The scheduler on a thread beside a worker (`kqueue consume` of an app with cron schedules)."""

from __future__ import annotations

import logging
import threading

from kqueue.cron.scheduler import CronScheduler
from kqueue.sdk.app import App

log = logging.getLogger("kqueue.cron")

RESTART_AFTER = 5.0  # seconds: a scheduler that failed (Kafka away at start) is started again


class SchedulerThread:
    def __init__(self, app: App) -> None:
        self._app = app
        self._stopping = threading.Event()
        self._scheduler: CronScheduler | None = None
        self._thread = threading.Thread(target=self._main, name="kqueue-cron", daemon=True)

    def start(self) -> SchedulerThread:
        self._thread.start()
        return self

    def _main(self) -> None:
        while not self._stopping.is_set():
            self._scheduler = CronScheduler(self._app)
            if self._stopping.is_set():
                return
            try:
                self._scheduler.run()
            except Exception:  # the worker goes on; the scheduler is started again
                log.exception("cron scheduler failed; starting it again in %.0fs", RESTART_AFTER)
                self._stopping.wait(RESTART_AFTER)

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        if self._scheduler is not None:
            self._scheduler.request_stop()
        self._thread.join(timeout)


def start_beside(app: App, enabled: bool) -> SchedulerThread | None:
    """A running scheduler thread if the app has schedules and cron is enabled, else None."""
    if not enabled or not app.cron_entries:
        return None
    return SchedulerThread(app).start()
