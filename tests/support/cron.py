"""Cron test helpers: `kqueue cron run` / `kqueue consume` of tests.apps.cron_app, and what they fired."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from kqueue.cron.listing import read_cron_log
from kqueue.cron.log import Beat, CronLog
from kqueue.sdk.app import App

ROOT = Path(__file__).resolve().parents[2]
CRON_APP = "tests.apps.cron_app:app"


@dataclass
class CronSetup:
    """One test's schedule: a fresh app name (so its own group, progress and transactional id), queue, log."""

    bootstrap: str
    app_name: str
    queue: str
    log: Path
    catch_up: str | None = None  # "true" / "false"; None: the default

    def env(self) -> dict[str, str]:
        env = {**os.environ, "KQUEUE_BOOTSTRAP_SERVERS": self.bootstrap, "KQ_CRON_APP": self.app_name,
               "KQ_TEST_QUEUE": self.queue, "KQ_TEST_LOG": str(self.log)}
        if self.catch_up is not None:
            env["KQ_CRON_CATCH_UP"] = self.catch_up
        return env

    def scheduler(self, output: IO[bytes] | None = None) -> subprocess.Popen[bytes]:
        """`kqueue cron run` alone."""
        return subprocess.Popen([sys.executable, "-m", "kqueue", "cron", "run", "--app", CRON_APP],
                                env=self.env(), cwd=ROOT, stdout=output, stderr=output)

    def worker(self, group: str, *extra: str, output: IO[bytes] | None = None) -> subprocess.Popen[bytes]:
        """`kqueue consume` of the app (it runs the scheduler too unless --no-cron is given)."""
        return subprocess.Popen([sys.executable, "-m", "kqueue", "consume", "--app", CRON_APP, "--group", group,
                                 "--log-level", "INFO", *extra], env=self.env(), cwd=ROOT, stdout=output,
                                stderr=output)

    def cli(self, *args: str, **variables: str) -> subprocess.CompletedProcess[str]:
        """A `kqueue` command with the test app's variables (and these, e.g. KQ_CRON_EXPR="...")."""
        return subprocess.run([sys.executable, "-m", "kqueue", *args], env={**self.env(), **variables}, cwd=ROOT,
                              capture_output=True, text=True, timeout=60)

    def ran(self) -> list[int]:
        """The ticks whose task ran, once per run (duplicates kept), in the order they ran."""
        if not self.log.exists():
            return []
        ticks = []
        for line in self.log.read_text().splitlines():
            task_id = line.split()[0]
            prefix, name, tick = task_id.split(":")
            assert (prefix, name) == ("cron", "tick"), task_id
            ticks.append(int(tick))
        return ticks

    def topic(self) -> CronLog:
        return read_cron_log(App(self.app_name, self.bootstrap))


def live_leader(log: CronLog, pids: set[int], fresh_ms: int = 5000) -> Beat | None:
    """The scheduler among `pids` whose latest beat (within `fresh_ms`) says it leads."""
    now_ms = int(time.time() * 1000)
    leading = [b for b in log.members.values()
               if b.leader and not b.stopped and b.pid in pids and now_ms - b.at_ms <= fresh_ms]
    return leading[0] if len(leading) == 1 else None


def beat_of(log: CronLog, pid: int) -> Beat | None:
    return next((b for b in log.members.values() if b.pid == pid), None)


def stop(*processes: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        process.wait(timeout)
