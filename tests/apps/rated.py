"""A test app for the rate-limit tests: `limited` (rate_limit from KQ_TEST_RATE, default 200/s) and
`free` (no limit) on one queue; each run appends "type monotonic_ns pid" to a log file, so the group's
rate can be read back from the lines of several worker processes (appends of one short line each).

KQ_TEST_QUEUE names the queue, KQ_TEST_LOG the file.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from kqueue import App

QUEUE = os.environ.get("KQ_TEST_QUEUE", "rated")
LOG = os.environ.get("KQ_TEST_LOG", "/tmp/kqueue-rated.log")
RATE = os.environ.get("KQ_TEST_RATE", "200/s")

app = App("rated")
_lock = threading.Lock()
_log = open(LOG, "a", buffering=1)  # noqa: SIM115 (open for the life of the worker process)
_pid = os.getpid()


def _record(kind: str) -> None:
    with _lock:
        _log.write(f"{kind} {time.monotonic_ns()} {_pid}\n")


@app.task(queue=QUEUE, rate_limit=RATE)
def limited(payload: dict[str, Any]) -> None:
    _record("limited")


@app.task(queue=QUEUE)
def free(payload: dict[str, Any]) -> None:
    _record("free")
