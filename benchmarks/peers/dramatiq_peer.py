"""Dramatiq on Redis, run in its own venv by benchmarks/peer_runs.py.

    python dramatiq_peer.py RECORDS

Sends a start marker, RECORDS no-op messages and an end marker, then runs one worker process
(`dramatiq --processes 1`, its default 8 threads) and times the start marker to the end marker
(drain_seconds; with 8 threads a few no-ops may still be finishing as the end marker runs, a few
microseconds each). Prints one JSON object. Only the standard library and Dramatiq are imported.
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

import dramatiq
from dramatiq.brokers.redis import RedisBroker

dramatiq.set_broker(RedisBroker(url=os.environ.get("PEER_REDIS_URL", "redis://127.0.0.1:6379/0")))
MARKS = Path(os.environ.get("PEER_MARKS", "."))


@dramatiq.actor
def noop(body: dict[str, Any]) -> None:
    return None


@dramatiq.actor
def mark(name: str) -> None:
    (MARKS / name).write_text(repr(time.time()))


def payload(i: int) -> dict[str, Any]:
    return {"to": f"user{i}@example.com", "subject": "hello", "body": "x" * 64, "priority": i % 5,
            "tags": ["bench"], "reply_to": None}


def main(records: int) -> dict[str, Any]:
    mark.send("start")
    started = time.perf_counter()
    for i in range(records):
        noop.send(payload(i))
    enqueue_seconds = time.perf_counter() - started
    mark.send("end")
    worker = subprocess.Popen([sys.executable, "-m", "dramatiq", "dramatiq_peer", "--processes", "1"],
                              cwd=Path(__file__).parent, env=os.environ, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 900
        while not (MARKS / "end").exists() and time.monotonic() < deadline and worker.poll() is None:
            time.sleep(0.1)
    finally:
        worker.terminate()
        worker.wait(60)
    if not (MARKS / "end").exists():
        raise SystemExit("the Dramatiq worker did not reach the end marker")
    drain = float((MARKS / "end").read_text()) - float((MARKS / "start").read_text())
    return {"enqueue_seconds": enqueue_seconds, "drain_seconds": drain, "records": records,
            "version": f"dramatiq {version('dramatiq')}, redis-py {version('redis')}"}


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]))))
