"""A queue-partition with a million claims in Q.dedup, through a real broker: read in the background
while the worker's other partitions run, expired claims never kept."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from confluent_kafka import Producer

import kqueue
from kqueue.core import names
from kqueue.core.dedup import IDEMPOTENCY, Claim, claim_key
from kqueue.core.murmur2 import partition_for_key
from tests.support.kafka import Kafka, unique
from tests.support.worker import ThreadedWorker, wait_for


@pytest.mark.slow
def test_a_million_claims_load_in_the_background_and_expired_ones_are_dropped(kafka: Kafka) -> None:
    """Before, claims were read within 10 s on the poll thread: a partition with ~1M claims could not
    be read and was held for good, and every expired claim stayed in memory."""
    app = kqueue.App("claims", kafka.bootstrap, partitions=2)
    queue = unique("claims")
    ran: list[tuple[int, float]] = []
    lock = threading.Lock()

    @app.task(queue=queue)
    def charge(payload: dict[str, Any], ctx: kqueue.TaskContext) -> None:
        with lock:
            ran.append((ctx.partition, time.monotonic()))

    app.ensure_queue(queue)
    now = int(time.time() * 1000)
    live, total = 10_000, 1_000_000
    producer = Producer({"bootstrap.servers": kafka.bootstrap, "linger.ms": 50, "batch.num.messages": 10_000,
                         "queue.buffering.max.messages": 500_000})
    topic = names.dedup_topic(queue)
    for n in range(total):
        until = now + 3_600_000 if n < live else now - 1000  # the rest expired
        value = Claim(IDEMPOTENCY, f"t{n}", f"{queue}/0/{n}", now - 5000, until).encode()
        while True:
            try:
                producer.produce(topic, value, claim_key(IDEMPOTENCY, "charge", f"key-{n}").encode(), partition=0)
                break
            except BufferError:
                producer.poll(0.05)
    # The keyed task below collides with a live claim of another origin: a duplicate once claims are read.
    held = Claim(IDEMPOTENCY, "first", f"{queue}/0/999999999", now, now + 3_600_000)
    producer.produce(topic, held.encode(), claim_key(IDEMPOTENCY, "charge", "order-7").encode(), partition=0)
    assert producer.flush(60) == 0

    key0 = next(k for k in (f"k{i}" for i in range(100)) if partition_for_key(k.encode(), 2) == 0)
    key1 = next(k for k in (f"k{i}" for i in range(100)) if partition_for_key(k.encode(), 2) == 1)
    charge.enqueue({"n": 0}, key=key0, idempotency_key="order-7")
    for n in range(20):
        charge.enqueue({"n": n}, key=key1)
    app.flush()
    started = time.monotonic()
    with ThreadedWorker(app, group=unique("g"), concurrency=4) as worker:
        wait_for(lambda: len(ran) >= 20, timeout=30, what="partition 1's tasks")
        first_of_p1 = min(t for p, t in ran if p == 1)
        wait_for(lambda: worker.worker.counts.duplicates == 1, timeout=120, what="the claims to be read")
        loaded_at = time.monotonic()
        book = worker.worker._table.claims_of(worker.worker._table.get((queue, 0)))  # type: ignore[arg-type]
        worker.stop()
    assert first_of_p1 - started < 0.5 * (loaded_at - started)  # partition 1 did not wait for the read
    assert all(p == 1 for p, _ in ran)  # the keyed task was a duplicate: not run
    assert book is not None and len(book.claims) == live + 1  # the expired ones were never kept
