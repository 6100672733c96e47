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
import sys
from importlib.metadata import version
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from redis_peer import enqueue_and_drain, write_mark

dramatiq.set_broker(RedisBroker(url=os.environ.get("PEER_REDIS_URL", "redis://127.0.0.1:6379/0")))


@dramatiq.actor
def noop(body: dict[str, Any]) -> None:
    return None


@dramatiq.actor
def mark(name: str) -> None:
    write_mark(name)


def main(records: int) -> dict[str, Any]:
    worker = [sys.executable, "-m", "dramatiq", "dramatiq_peer", "--processes", "1"]
    versions = f"dramatiq {version('dramatiq')}, redis-py {version('redis')}"
    return enqueue_and_drain(records, noop.send, mark.send, worker, "Dramatiq", versions)


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]))))
