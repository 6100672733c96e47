"""FastStream on Kafka, run in its own venv by benchmarks/peer_runs.py: publish N records, then drain them.

    python faststream_peer.py aiokafka|confluent BOOTSTRAP TOPIC RECORDS

Prints one JSON object: enqueue_seconds (N publishes, FastStream's default publish, which waits for
the broker's ack, 1000 awaited at a time as the SDK async row does), drain_seconds (a subscriber with
FastStream's defaults and a no-op handler, first message to the Nth), version.
Imports only the standard library and FastStream: kqueue is not installed in this venv.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
import time
import uuid
from importlib.metadata import version
from typing import Any

WINDOW = 1000


def payload(i: int) -> dict[str, Any]:  # the same fields as benchmarks/throughput.py's payload
    return {"to": f"user{i}@example.com", "subject": "hello", "body": "x" * 64, "priority": i % 5,
            "tags": ["bench"], "reply_to": None}


async def main(backend: str, bootstrap: str, topic: str, records: int) -> dict[str, Any]:
    module = importlib.import_module("faststream.kafka" if backend == "aiokafka" else "faststream.confluent")
    broker = module.KafkaBroker(bootstrap)
    seen = 0
    first: list[float] = []
    done = asyncio.Event()

    @broker.subscriber(topic, group_id=f"fs-{uuid.uuid4().hex[:6]}", auto_offset_reset="earliest")
    async def handle(body: dict[str, Any]) -> None:
        nonlocal seen
        if not first:
            first.append(time.perf_counter())
        seen += 1
        if seen >= records:
            done.set()

    await broker.connect()
    started = time.perf_counter()
    for start in range(0, records, WINDOW):
        await asyncio.gather(*(broker.publish(payload(i), topic) for i in range(start, min(records, start + WINDOW))))
    enqueue_seconds = time.perf_counter() - started
    await broker.start()
    await asyncio.wait_for(done.wait(), timeout=600)
    drain_seconds = time.perf_counter() - first[0]
    await broker.close() if hasattr(broker, "close") else await broker.stop()
    return {"enqueue_seconds": enqueue_seconds, "drain_seconds": drain_seconds, "records": records,
            "version": f"faststream {version('faststream')}"}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))))
