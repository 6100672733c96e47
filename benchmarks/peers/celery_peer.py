"""Celery on Redis, run in its own venv by benchmarks/peer_runs.py.

    python celery_peer.py REDIS_URL RECORDS MARKS_DIR

Enqueues a start marker, RECORDS no-op tasks with `.delay` (timed: enqueue_seconds) and an end
marker, then runs one worker process (`celery worker --pool solo`: one process; Celery's default
prefork pool would add a parent beside its child) and times the start marker to the end marker
(drain_seconds). Prints one JSON object. Only the standard library and Celery are imported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

from celery import Celery

app = Celery("celery_peer", broker=os.environ.get("PEER_REDIS_URL", "redis://127.0.0.1:6379/0"))
app.conf.task_ignore_result = True
MARKS = Path(os.environ.get("PEER_MARKS", "."))


@app.task
def noop(body: dict[str, Any]) -> None:
    return None


@app.task
def mark(name: str) -> None:
    (MARKS / name).write_text(repr(time.time()))


def payload(i: int) -> dict[str, Any]:
    return {"to": f"user{i}@example.com", "subject": "hello", "body": "x" * 64, "priority": i % 5,
            "tags": ["bench"], "reply_to": None}


def main(records: int) -> dict[str, Any]:
    mark.delay("start")
    started = time.perf_counter()
    for i in range(records):
        noop.delay(payload(i))
    enqueue_seconds = time.perf_counter() - started
    mark.delay("end")
    worker = subprocess.Popen([sys.executable, "-m", "celery", "-A", "celery_peer", "worker", "--pool", "solo",
                               "--loglevel", "WARNING"], cwd=Path(__file__).parent, env=os.environ,
                              stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 900
        while not (MARKS / "end").exists() and time.monotonic() < deadline and worker.poll() is None:
            time.sleep(0.1)
    finally:
        worker.terminate()
        worker.wait(60)
    if not (MARKS / "end").exists():
        raise SystemExit("the Celery worker did not reach the end marker")
    drain = float((MARKS / "end").read_text()) - float((MARKS / "start").read_text())
    return {"enqueue_seconds": enqueue_seconds, "drain_seconds": drain, "records": records,
            "version": f"celery {version('celery')}, redis-py {version('redis')}"}


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]))))
