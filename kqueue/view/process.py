"""The status view's ingest (its reader) as a child process of `kqueue api` (it must not slow the
HTTP side), watched: a reader that ends (disk full, a Kafka error, a kill) is started again after a
backoff, and `health()` says what state it is in for the API's /readyz."""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from kqueue.view.ingest import Ingest
from kqueue.view.store import StatusStore

log = logging.getLogger("kqueue.view")

RESTART_FIRST = 1.0  # seconds before the first restart
RESTART_MAX = 30.0  # the backoff's cap: a reader that cannot run (disk full) is retried this often
STABLE_AFTER = 60.0  # a reader that ran this long before it ended starts the backoff afresh
GROUP_STOP_GRACE = 3.0  # seconds a reader that stopped cleanly waits for the API's own stop


def restart_delay(streak: int) -> float:
    """Seconds to wait before starting the reader again after its `streak`-th end in a row (1-based):
    doubling from RESTART_FIRST, capped at RESTART_MAX."""
    return min(RESTART_MAX, RESTART_FIRST * 2.0 ** max(0, streak - 1))


def describe_exit(exitcode: int | None) -> str:
    """A child's end for a person: `exit code 1`, `killed by SIGKILL`."""
    if exitcode is None:
        return "still running"
    if exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit code {exitcode}"


@dataclass(frozen=True)
class ReaderHealth:
    """What /readyz says about the reader: ready while it reads."""

    state: str  # starting | reading | restarting | stopped
    restarts: int
    detail: str

    @property
    def ready(self) -> bool:
        return self.state == "reading"

    def as_json(self) -> dict[str, Any]:
        return {"state": self.state, "restarts": self.restarts, "detail": self.detail}


def ingest_main(bootstrap: str, db: str, queues: list[str], tiers: list[str], prefix: str, groups: list[str],
                parent: int, log_level: int, started: Connection) -> None:
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ingest = Ingest(bootstrap, StatusStore(db), queues, tiers, prefix, groups)
    signal.signal(signal.SIGTERM, lambda *_: ingest.stop())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent stops us

    def orphaned() -> None:  # the API died without stopping us (SIGKILL): do not read on alone
        while os.getppid() == parent:
            time.sleep(1.0)
        ingest.stop()

    threading.Thread(target=orphaned, daemon=True).start()

    def first_step_done() -> None:
        started.send(True)
        started.close()

    ingest.run(on_started=first_step_done)


class IngestProcess:
    def __init__(self, bootstrap: str, db: str | Path, queues: Sequence[str], tiers: Sequence[str],
                 prefix: str = "", groups: Sequence[str] = ()) -> None:
        self._context: Any = multiprocessing.get_context("spawn")
        self._args = (bootstrap, str(db), list(queues), list(tiers), prefix, list(groups), os.getpid(),
                      logging.getLogger().getEffectiveLevel())
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._process: Any = None
        self._started: Connection | None = None
        self._health = ReaderHealth("starting", 0, "the reader is starting")
        self._watcher = threading.Thread(target=self._watch, name="kqueue-view-watch", daemon=True)

    def start(self) -> IngestProcess:
        self._spawn()
        self._watcher.start()
        return self

    def health(self) -> ReaderHealth:
        return self._health

    def _spawn(self) -> None:
        with self._lock:
            if self._stopping.is_set():
                return
            receive, send = self._context.Pipe(duplex=False)
            self._process = self._context.Process(target=ingest_main, name="kqueue-status-ingest", daemon=True,
                                                  args=(*self._args, send))
            self._process.start()
            send.close()  # the child holds the other end: its end (death included) reads as EOF here
            self._started = receive

    def _watch(self) -> None:
        streak = 0
        while not self._stopping.is_set():
            process, started = self._process, self._started
            born = time.monotonic()
            self._await_start(process, started)
            process.join()
            # Exit 0 is a stop the reader was told: a SIGTERM to the whole group (`timeout`, systemd)
            # reaches it before the API, whose own stop follows in a moment. Not a crash to report.
            if self._stopping.wait(GROUP_STOP_GRACE if process.exitcode == 0 else 0):
                return
            ran_for = time.monotonic() - born
            streak = 1 if ran_for >= STABLE_AFTER else streak + 1
            delay = restart_delay(streak)
            ended = describe_exit(process.exitcode)
            log.warning("the status view's reader stopped (%s) after %.0fs; starting it again in %.1fs "
                        "(restart %d)", ended, ran_for, delay, self._health.restarts + 1)
            self._health = ReaderHealth("restarting", self._health.restarts,
                                        f"the reader stopped ({ended}); starting it again in {delay:.1f}s")
            if self._stopping.wait(delay):
                return
            self._health = ReaderHealth("starting", self._health.restarts + 1,
                                        f"the reader is starting again (it stopped: {ended})")
            self._spawn()

    def _await_start(self, process: Any, started: Connection | None) -> None:
        """Until the child has read once (then: reading) or ended; the pipe reads as EOF when it ends."""
        if started is None:
            return
        try:
            wait([started, process.sentinel])
            if started.poll() and started.recv():
                self._health = ReaderHealth("reading", self._health.restarts, "the reader is reading Kafka")
                if self._health.restarts:
                    log.warning("the status view's reader is reading again (restart %d)", self._health.restarts)
        except (EOFError, OSError):
            pass  # it ended before its first read: the caller restarts it
        finally:
            started.close()

    def stop(self, timeout: float = 10.0) -> None:
        with self._lock:
            self._stopping.set()
            process = self._process
        self._health = ReaderHealth("stopped", self._health.restarts, "the API is stopping")
        if process is None:
            return
        if process.is_alive():
            process.terminate()
        process.join(timeout)
        if process.is_alive():
            process.kill()
            process.join(2.0)
