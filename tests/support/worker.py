"""Run workers for tests: in-process threads and real `kqueue consume` subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from kqueue.sdk.app import App
from kqueue.worker.dedup_gate import ClaimLoader
from kqueue.worker.loop import Transport, Worker, WorkerOptions, WorkerStats


class ThreadedWorker:
    """A Worker running in a background thread until stopped."""

    def __init__(self, app: App, transport: Transport | None = None, claim_loader: ClaimLoader | None = None,
                 **options: object) -> None:
        self.worker = Worker(app, WorkerOptions(**options), transport, claim_loader)  # type: ignore[arg-type]
        self.stats: WorkerStats | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        try:
            self.stats = self.worker.run()
        except BaseException as exc:
            self.error = exc

    def __enter__(self) -> ThreadedWorker:
        self._thread.start()
        return self

    def stop(self, timeout: float = 60.0) -> WorkerStats:
        self.worker.request_stop()
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "worker did not stop"
        if self.error is not None:
            raise self.error
        assert self.stats is not None
        return self.stats

    def __exit__(self, *exc: object) -> None:
        if self._thread.is_alive():
            self.stop()


def wait_for(condition: Callable[[], bool], timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def consume_process(bootstrap: str, queue: str, group: str, log: Path, *extra: str,
                    stderr: int | None = None) -> subprocess.Popen[bytes]:
    """`kqueue consume --app tests.apps.recorder:app` as a user would start it (stderr=PIPE to read it)."""
    env = {**os.environ, "KQUEUE_BOOTSTRAP_SERVERS": bootstrap, "KQ_TEST_QUEUE": queue, "KQ_TEST_LOG": str(log)}
    return subprocess.Popen(
        [sys.executable, "-m", "kqueue", "consume", "--app", "tests.apps.recorder:app", "--group", group,
         "--log-level", "WARNING", *extra],
        env=env, cwd=Path(__file__).resolve().parents[2], stderr=stderr,
    )


def recorded(log: Path) -> list[str]:
    """Task ids the recorder app completed, one per completion (duplicates kept)."""
    if not log.exists():
        return []
    return [line.split()[0] for line in log.read_text().splitlines() if line.strip()]
