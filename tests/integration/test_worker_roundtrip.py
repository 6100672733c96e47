"""Tasks go through the real broker and a real worker: sync, async, Avro, per-key order."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import kqueue
from tests.support.kafka import unique
from tests.support.worker import ThreadedWorker, wait_for

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


def test_sync_and_async_round_trip_with_avro_and_context(bootstrap: str) -> None:
    app = kqueue.App("rt", bootstrap, schemas_dir=SCHEMAS)
    queue = unique("rt")
    done: dict[str, Any] = {}
    lock = threading.Lock()

    @app.task(queue=queue, schema="send_email.avsc")
    def send_email(payload: dict[str, Any], ctx: kqueue.TaskContext) -> None:
        with lock:
            done[ctx.task_id] = ("sync", payload["to"], ctx.attempt, ctx.key)

    @app.task(queue=queue)
    async def notify(payload: dict[str, Any]) -> None:
        await asyncio.sleep(0.001)
        with lock:
            done[payload["id"]] = ("async", payload["n"])

    sync_ids = {send_email.enqueue({"to": f"u{i}@x.org"}, key=f"user-{i}"): i for i in range(200)}
    async_ids = [f"n{i}" for i in range(200)]
    for i, note_id in enumerate(async_ids):
        notify.enqueue({"id": note_id, "n": i})
    app.flush()

    with ThreadedWorker(app, group=unique("g"), concurrency=8) as worker:
        wait_for(lambda: len(done) == 400, what="400 tasks")
        stats = worker.stop()
    assert stats.completed == 400 and stats.dead_lettered == 0
    for task_id, i in sync_ids.items():
        assert done[task_id] == ("sync", f"u{i}@x.org", 1, f"user-{i}".encode())
    assert all(done[n][0] == "async" for n in async_ids)


def test_enqueue_async_waits_for_kafka(bootstrap: str) -> None:
    app = kqueue.App("rt", bootstrap)
    queue = unique("aenq")
    seen: list[int] = []

    @app.task(queue=queue)
    def job(payload: dict[str, Any]) -> None:
        seen.append(payload["n"])

    async def enqueue_all() -> list[str]:
        return await asyncio.gather(*(job.enqueue_async({"n": i}) for i in range(50)))

    ids = asyncio.run(enqueue_all())
    assert len(set(ids)) == 50
    with ThreadedWorker(app, group=unique("g")) as worker:
        wait_for(lambda: len(seen) == 50, what="50 tasks")
        worker.stop()
    assert sorted(seen) == list(range(50))


def test_per_key_order_with_concurrency_32_over_1000_keys(bootstrap: str) -> None:
    app = kqueue.App("order", bootstrap, partitions=6)
    queue = unique("order")
    per_key: dict[str, list[int]] = defaultdict(list)
    active: set[str] = set()
    overlap_same_key = []
    running = 0
    peak = 0
    lock = threading.Lock()
    rng = random.Random(42)

    @app.task(queue=queue)
    def step(payload: dict[str, Any], ctx: kqueue.TaskContext) -> None:
        nonlocal running, peak
        key = payload["key"]
        with lock:
            if key in active:
                overlap_same_key.append(key)
            active.add(key)
            running += 1
            peak = max(peak, running)
        time.sleep(payload["pause"])
        with lock:
            per_key[key].append(payload["seq"])
            active.discard(key)
            running -= 1

    keys = [f"k{i}" for i in range(1000)]
    rounds = 4
    for seq in range(rounds):
        for key in keys:
            step.enqueue({"key": key, "seq": seq, "pause": rng.choice([0, 0, 0.001, 0.003])}, key=key)
    app.flush()
    total = len(keys) * rounds
    with ThreadedWorker(app, group=unique("g"), concurrency=32, batch_size=500) as worker:
        wait_for(lambda: sum(len(v) for v in per_key.values()) == total, timeout=120, what=f"{total} tasks")
        stats = worker.stop()
    assert stats.completed == total
    assert overlap_same_key == []  # one key never ran twice at once
    assert all(per_key[key] == list(range(rounds)) for key in keys)  # offset order per key
    assert peak > 8  # different keys really ran concurrently
