"""enqueue() never blocks past the app's enqueue_timeout, and every failure is kqueue's own
DeliveryError naming the cause; what was accepted is delivered, nothing is dropped silently."""

from __future__ import annotations

import time
from typing import Any

import pytest

import kqueue
from kqueue.core.errors import DeliveryError, RecordTooLarge
from kqueue.core.oversize import MAX_RECORD_BYTES
from tests.support.kafka import Kafka, unique


def test_enqueue_against_an_unreachable_cluster_fails_within_the_bound() -> None:
    app = kqueue.App("bounds", "127.0.0.1:1", enqueue_timeout=2.0)

    @app.task(queue="nowhere")
    def job(payload: dict[str, Any]) -> None:
        return None

    started = time.monotonic()
    with pytest.raises(DeliveryError) as caught:
        job.enqueue({"n": 1})
    waited = time.monotonic() - started
    assert waited < 2.0 + 3.0, f"enqueue blocked {waited:.1f}s past its 2s bound"
    message = str(caught.value)
    assert "Kafka at 127.0.0.1:1 did not answer within 2s to set up queue 'nowhere'" in message
    assert "\n" not in message


def test_a_full_send_buffer_fails_the_enqueue_within_the_bound_and_keeps_what_was_accepted(kafka: Kafka) -> None:
    # A tiny buffer that nothing drains for 10 s (linger): the fourth task finds no room.
    app = kqueue.App("bounds", kafka.bootstrap, partitions=1, enqueue_timeout=1.0,
                     producer_config={"queue.buffering.max.messages": 3, "linger.ms": 10_000})
    queue = unique("fullbuffer")

    @app.task(queue=queue)
    def job(payload: dict[str, Any]) -> None:
        return None

    accepted = [job.enqueue({"n": n}) for n in range(3)]
    started = time.monotonic()
    with pytest.raises(DeliveryError, match="send buffer stayed full for 1s"):
        job.enqueue({"n": 3})
    assert time.monotonic() - started < 1.0 + 2.0
    app.flush(timeout=30)
    ids = sorted(dict(m.headers() or [])["kq-id"].decode() for m in kafka.read_all(queue, expected=3))
    assert ids == sorted(accepted)  # the three accepted tasks arrived; the refused one did not


def test_a_task_too_large_for_kafka_is_refused_at_enqueue_with_the_reason(kafka: Kafka) -> None:
    app = kqueue.App("bounds", kafka.bootstrap, partitions=1)
    queue = unique("toolarge")

    @app.task(queue=queue)
    def job(payload: dict[str, Any]) -> None:
        return None

    with pytest.raises(RecordTooLarge, match=f"over the {MAX_RECORD_BYTES}-byte limit"):
        job.enqueue({"blob": "x" * MAX_RECORD_BYTES})
    job.enqueue({"blob": "small"})  # the producer is still fine
    app.flush()
    assert len(kafka.read_all(queue, expected=1)) == 1
