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
import sys
from importlib.metadata import version
from typing import Any

from celery import Celery
from redis_peer import enqueue_and_drain, write_mark

app = Celery("celery_peer", broker=os.environ.get("PEER_REDIS_URL", "redis://127.0.0.1:6379/0"))
app.conf.task_ignore_result = True


@app.task
def noop(body: dict[str, Any]) -> None:
    return None


@app.task
def mark(name: str) -> None:
    write_mark(name)


def main(records: int) -> dict[str, Any]:
    worker = [sys.executable, "-m", "celery", "-A", "celery_peer", "worker", "--pool", "solo", "--loglevel", "WARNING"]
    versions = f"celery {version('celery')}, redis-py {version('redis')}"
    return enqueue_and_drain(records, noop.delay, mark.delay, worker, "Celery", versions)


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]))))
