"""What the Redis peers (celery_peer.py, dramatiq_peer.py) share; only the standard library, since
each runs in its peer's own venv: the task payload, and enqueue-then-drain timed by marker tasks."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

MARKS = Path(os.environ.get("PEER_MARKS", "."))


def payload(i: int) -> dict[str, Any]:
    return {"to": f"user{i}@example.com", "subject": "hello", "body": "x" * 64, "priority": i % 5,
            "tags": ["bench"], "reply_to": None}


def write_mark(name: str) -> None:
    (MARKS / name).write_text(repr(time.time()))


def enqueue_and_drain(records: int, send: Callable[[dict[str, Any]], object], mark: Callable[[str], object],
                      worker_command: list[str], peer: str, versions: str) -> dict[str, Any]:
    """A start marker, `records` no-op tasks (timed: enqueue_seconds), an end marker; then one worker
    process, timed from the start marker to the end marker (drain_seconds)."""
    mark("start")
    started = time.perf_counter()
    for i in range(records):
        send(payload(i))
    enqueue_seconds = time.perf_counter() - started
    mark("end")
    worker = subprocess.Popen(worker_command, cwd=Path(__file__).parent, env=os.environ,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 900
        while not (MARKS / "end").exists() and time.monotonic() < deadline and worker.poll() is None:
            time.sleep(0.1)
    finally:
        worker.terminate()
        worker.wait(60)
    if not (MARKS / "end").exists():
        raise SystemExit(f"the {peer} worker did not reach the end marker")
    drain = float((MARKS / "end").read_text()) - float((MARKS / "start").read_text())
    return {"enqueue_seconds": enqueue_seconds, "drain_seconds": drain, "records": records, "version": versions}
