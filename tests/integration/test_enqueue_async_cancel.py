"""enqueue_async under cancellation and back-pressure: a caller that stops awaiting (wait_for timeout,
TaskGroup, a loop shutting down) never harms other enqueues, and a full send buffer is waited out
without blocking the event loop."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
from typing import Any

import pytest

import kqueue
from kqueue.core.errors import DeliveryError
from kqueue.sdk.task import TaskDef
from tests.support.kafka import Kafka, unique

LATER_ENQUEUE_LIMIT = 5.0  # seconds; a later enqueue that needs longer is stuck, not slow


def _lingering_app(kafka: Kafka, queue: str) -> tuple[kqueue.App, TaskDef]:
    # linger.ms holds each record in the producer for a moment, so a caller is cancelled while it awaits
    # the delivery report, and the report reaches a future nobody waits on any more.
    app = kqueue.App("acancel", kafka.bootstrap, partitions=1, producer_config={"linger.ms": 300})

    @app.task(queue=queue)
    def job(payload: dict[str, Any]) -> None:
        return None

    return app, job


async def _until_holding(app: kqueue.App, records: int) -> None:
    """Until the producer holds exactly `records` records whose delivery reports are not served yet."""
    deadline = time.monotonic() + LATER_ENQUEUE_LIMIT
    while len(app.producer) != records:
        assert time.monotonic() < deadline, f"the producer never held {records} record(s)"
        await asyncio.sleep(0.005)


def _numbers(kafka: Kafka, queue: str, expected: int) -> list[int]:
    return sorted(json.loads(m.value())["n"] for m in kafka.read_all(queue, expected=expected))


def test_a_cancelled_enqueue_async_leaves_later_enqueues_working(kafka: Kafka) -> None:
    queue = unique("acancel")
    app, job = _lingering_app(kafka, queue)

    async def scenario() -> list[str]:
        await job.enqueue_async({"n": 0})  # the queue exists and the delivery poller runs
        await _until_holding(app, 0)
        cancelled = asyncio.create_task(job.enqueue_async({"n": 1}))
        await _until_holding(app, 1)
        cancelled.cancel()  # as a wait_for timeout, a TaskGroup or a shutdown does, while it awaits the report
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        later = []
        for n in (2, 3):
            started = time.monotonic()
            later.append(await asyncio.wait_for(job.enqueue_async({"n": n}), LATER_ENQUEUE_LIMIT))
            assert time.monotonic() - started < 2.0
        return later

    later = asyncio.run(scenario())
    assert len(set(later)) == 2
    # the cancelled caller's record was already handed to Kafka: it is delivered, not lost or stuck
    assert _numbers(kafka, queue, expected=4) == [0, 1, 2, 3]
    app.flush(timeout=10)  # nothing failed, nothing is left behind


def test_a_loop_closed_with_an_enqueue_in_flight_does_not_stop_the_next_loops_enqueues(kafka: Kafka) -> None:
    queue = unique("aclosed")
    app, job = _lingering_app(kafka, queue)

    async def leave_one_in_flight() -> None:
        await job.enqueue_async({"n": 0})
        await _until_holding(app, 0)
        in_flight = asyncio.create_task(job.enqueue_async({"n": 1}))
        await _until_holding(app, 1)
        assert not in_flight.done()  # it awaits its report; asyncio.run cancels it on the way out

    asyncio.run(leave_one_in_flight())  # the loop is closed before the record's report arrives

    async def next_loop() -> str:
        return await asyncio.wait_for(job.enqueue_async({"n": 2}), LATER_ENQUEUE_LIMIT)

    started = time.monotonic()
    asyncio.run(next_loop())
    assert time.monotonic() - started < 2.0
    assert _numbers(kafka, queue, expected=3) == [0, 1, 2]
    app.flush(timeout=10)


def test_a_full_send_buffer_is_waited_out_without_blocking_the_event_loop(kafka: Kafka) -> None:
    # A two-record buffer that nothing drains for 10 s (linger): the third task finds no room.
    bound = 1.5
    app = kqueue.App("abuffer", kafka.bootstrap, partitions=1, enqueue_timeout=bound,
                     producer_config={"queue.buffering.max.messages": 2, "linger.ms": 10_000})
    queue = unique("abuffer")

    @app.task(queue=queue)
    def job(payload: dict[str, Any]) -> None:
        return None

    accepted = [job.enqueue({"n": n}) for n in range(2)]

    async def enqueue_while_ticking() -> tuple[float, float]:
        ticks: list[float] = [time.monotonic()]

        async def tick() -> None:
            while True:
                await asyncio.sleep(0.01)
                ticks.append(time.monotonic())

        ticker = asyncio.create_task(tick())
        await asyncio.sleep(0.05)
        started = time.monotonic()
        with pytest.raises(DeliveryError, match=re.escape(f"send buffer stayed full for {bound:g}s")):
            await job.enqueue_async({"n": 2})
        waited = time.monotonic() - started
        await asyncio.sleep(0.05)
        ticker.cancel()
        gaps = [b - a for a, b in itertools.pairwise(ticks)]
        return waited, max(gaps)

    waited, longest_gap = asyncio.run(enqueue_while_ticking())
    assert bound <= waited < bound + 2.0
    # The loop kept ticking every ~10 ms while the enqueue waited for room (it used to stall for the whole bound).
    assert longest_gap < 0.3, f"the event loop stalled {longest_gap:.2f}s while the enqueue waited"
    app.flush(timeout=30)
    ids = sorted(dict(m.headers() or [])["kq-id"].decode() for m in kafka.read_all(queue, expected=2))
    assert ids == sorted(accepted)
