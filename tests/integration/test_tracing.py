"""Traces through a real broker: the span tree of a task across retries, the dead letter's trace
context, and a foreign producer's traceparent as the parent of the attempt's span."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import Producer
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import kqueue
from kqueue.core import names
from kqueue.core.headers import header_map
from kqueue.core.retry import RetryPolicy
from kqueue.observe.tracing import TRACEPARENT, TRACESTATE, TracingMiddleware, extract_parent, previous_attempt
from tests.support.kafka import Kafka, unique
from tests.support.worker import ThreadedWorker

FAST_TIERS = ("1s", "2s", "5s")
FAST_BACKOFF = RetryPolicy(base=1.0, factor=1.0, cap=1.0, jitter=0.0)  # each retry after 1 s


@pytest.fixture()
def traced() -> Iterator[tuple[TracingMiddleware, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield TracingMiddleware(provider), exporter  # explicit: the global provider can be set once per process
    provider.shutdown()


def _spans(exporter: InMemorySpanExporter, name: str, count: int, timeout: float = 60.0) -> list[ReadableSpan]:
    """The finished spans called `name` once there are `count` (process spans end at settlement)."""
    deadline = time.monotonic() + timeout
    while True:
        found = [s for s in exporter.get_finished_spans() if s.name == name]
        if len(found) >= count or time.monotonic() > deadline:
            assert len(found) == count, f"{len(found)} finished {name!r} spans, wanted {count}"
            return sorted(found, key=lambda s: s.start_time or 0)
        time.sleep(0.05)


def _events(span: ReadableSpan) -> list[str]:
    return [e.name for e in span.events]


def test_retried_task_is_one_trace_of_linked_attempts(
        kafka: Kafka, traced: tuple[TracingMiddleware, InMemorySpanExporter]) -> None:
    middleware, exporter = traced
    app = kqueue.App("traced", kafka.bootstrap, partitions=1, delay_tiers=FAST_TIERS, retry_policy=FAST_BACKOFF,
                     middleware=[middleware])
    queue = unique("trace")

    @app.task(queue=queue, max_attempts=5)
    def flaky(payload: dict[str, Any], ctx: kqueue.TaskContext) -> None:
        if ctx.attempt <= 2:
            raise ConnectionError(f"attempt {ctx.attempt} failed")

    task_id = flaky.enqueue({}, key="k1")
    app.flush()
    with ThreadedWorker(app, group=unique("g")) as worker:
        attempts = _spans(exporter, f"process {queue}", 3)
        worker.stop()
    [send] = _spans(exporter, f"send {queue}", 1)
    assert send.kind is SpanKind.PRODUCER and send.attributes is not None
    assert send.attributes["messaging.message.id"] == task_id
    assert send.attributes["messaging.destination.name"] == queue
    assert send.attributes["messaging.kafka.message.key"] == "k1"
    trace_id = send.context.trace_id
    for n, span in enumerate(attempts, start=1):
        assert span.kind is SpanKind.CONSUMER and span.attributes is not None
        assert span.context.trace_id == trace_id
        assert span.parent is not None and span.parent.span_id == send.context.span_id
        assert span.attributes["kqueue.attempt"] == n and span.attributes["messaging.message.id"] == task_id
        assert span.attributes["messaging.operation.type"] == "process"
        assert span.attributes["messaging.destination.partition.id"] == "0"
        assert isinstance(span.attributes["messaging.kafka.offset"], int)
        assert span.attributes["kqueue.worker"] == worker.worker.worker_id or n == 1  # known after the first tick
        assert _events(span)[:3] == ["picked_up", "started", "finished"]
    first, second, third = attempts
    assert not first.links
    assert [link.context.span_id for link in second.links] == [first.context.span_id]
    assert [link.context.span_id for link in third.links] == [second.context.span_id]
    for failed in (first, second):
        assert failed.status.status_code is StatusCode.ERROR and failed.status.description == "ConnectionError"
        [retried] = [e for e in failed.events if e.name == "retried"]
        assert retried.attributes is not None and retried.attributes["kqueue.retry.tier"] == "1s"
        assert retried.attributes["kqueue.destination"] == names.delay_topic(queue, "1s")
        assert "exception" in _events(failed)
    assert _events(third)[-1] == "completed" and third.status.status_code is StatusCode.UNSET
    assert third.attributes is not None and third.attributes["messaging.consumer.group.name"]


def test_dead_letter_carries_the_trace(kafka: Kafka, traced: tuple[TracingMiddleware, InMemorySpanExporter]) -> None:
    middleware, exporter = traced
    app = kqueue.App("traced", kafka.bootstrap, partitions=1, delay_tiers=FAST_TIERS, retry_policy=FAST_BACKOFF,
                     middleware=[middleware])
    queue = unique("tracedlq")

    @app.task(queue=queue, max_attempts=2)
    def doomed(payload: dict[str, Any]) -> None:
        raise ValueError("never works")

    doomed.enqueue({})
    app.flush()
    with ThreadedWorker(app, group=unique("g")) as worker:
        first, last = _spans(exporter, f"process {queue}", 2)
        worker.stop()
    [send] = _spans(exporter, f"send {queue}", 1)
    assert "retried" in _events(first)
    assert [link.context.span_id for link in last.links] == [first.context.span_id]
    [dead] = [e for e in last.events if e.name == "dead_lettered"]
    assert dead.attributes == {"kqueue.destination": names.dlq_topic(queue), "error.type": "ValueError"}
    assert last.status.status_code is StatusCode.ERROR
    [letter] = kafka.read_all(names.dlq_topic(queue), expected=1)
    headers = header_map(letter.headers())
    parent = extract_parent(headers)
    assert parent is not None and parent.trace_id == send.context.trace_id
    assert parent.span_id == send.context.span_id
    assert previous_attempt(headers[TRACESTATE]) == last.context.span_id  # a replay's attempt links to it


def test_foreign_producers_traceparent_is_the_parent(
        kafka: Kafka, traced: tuple[TracingMiddleware, InMemorySpanExporter]) -> None:
    middleware, exporter = traced
    app = kqueue.App("traced", kafka.bootstrap, partitions=1, middleware=[middleware])
    queue = unique("traceforeign")
    ran: list[int] = []

    @app.task(queue=queue, name="charge")
    def charge(payload: dict[str, Any]) -> None:
        ran.append(payload["n"])

    app.ensure_queue(queue)
    trace_id, span_id = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    producer = Producer({"bootstrap.servers": kafka.bootstrap, "acks": "all", "enable.idempotence": True})
    # What a Java or Go service writes: kq-type, a JSON payload, and its instrumentation's W3C headers.
    producer.produce(queue, value=json.dumps({"n": 1}).encode(), key=b"order-1", headers=[
        (names.H_TYPE, b"charge"), (names.H_CONTENT_TYPE, b"json"),
        (TRACEPARENT, f"00-{trace_id}-{span_id}-01".encode()), (TRACESTATE, b"rojo=00f067aa0ba902b7"),
    ])
    producer.produce(queue, value=b"{}", headers=[(names.H_TYPE, b"refund"),  # no handler: dead-lettered unrun
                                                  (TRACEPARENT, f"00-{trace_id}-{span_id}-01".encode())])
    assert producer.flush(10) == 0
    with ThreadedWorker(app, group=unique("g")) as worker:
        ran_span, unrun = _spans(exporter, f"process {queue}", 2)
        worker.stop()
    if "started" not in _events(ran_span):
        ran_span, unrun = unrun, ran_span
    assert ran == [1] and not _spans(exporter, f"send {queue}", 0)
    assert f"{ran_span.context.trace_id:032x}" == trace_id
    assert ran_span.parent is not None and f"{ran_span.parent.span_id:016x}" == span_id and ran_span.parent.is_remote
    assert dict(ran_span.context.trace_state) == {"rojo": "00f067aa0ba902b7"}
    assert ran_span.attributes is not None and ran_span.attributes["kqueue.task.type"] == "charge"
    assert ran_span.attributes["messaging.kafka.message.key"] == "order-1"
    assert _events(ran_span)[-1] == "completed"
    assert _events(unrun) == ["dead_lettered"] and unrun.status.status_code is StatusCode.ERROR
    # The unrun record's short span is parented by its own traceparent too (SettleEvent.headers).
    assert f"{unrun.context.trace_id:032x}" == trace_id
    assert unrun.parent is not None and f"{unrun.parent.span_id:016x}" == span_id
