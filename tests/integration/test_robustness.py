"""Regressions from review: nothing a record or a handler does may lose a task or stall a key."""

from __future__ import annotations

import asyncio
import sys
import threading
from typing import Any

import pytest
from confluent_kafka import Producer

import kqueue
from kqueue.core import names
from kqueue.core.headers import header_map
from kqueue.transport.inspect import topic_depths
from kqueue.worker.partitions import PauseReason
from tests.support.kafka import Kafka, unique
from tests.support.worker import ThreadedWorker, wait_for


@pytest.mark.parametrize("transactions", [True, False])
def test_an_undeliverable_dead_letter_holds_its_partition_without_committing(kafka: Kafka, transactions: bool) -> None:
    """The DLQ refuses anything but tiny records, so neither the dead letter nor its dead letter by
    reference can land. The worker keeps running (before, three refusals in a row stopped it, and
    with it every other partition); the partition is held with nothing committed past the task."""
    app = kqueue.App("robust", kafka.bootstrap, partitions=1)
    queue = unique("undeliverable")
    admin = kafka.admin()
    from confluent_kafka.cimpl import NewTopic

    for future in admin.create_topics([NewTopic(names.dlq_topic(queue), 1, 1,
                                                config={"max.message.bytes": "200"})]).values():
        future.result(timeout=30)

    @app.task(queue=queue)
    def refuse(payload: dict[str, Any]) -> None:
        raise kqueue.Reject("x" * 300)

    for i in range(5):
        refuse.enqueue({"n": i})
    app.flush()
    group = unique("g")
    with ThreadedWorker(app, group=group, transactions=transactions, grace=2, commit_interval=0.1) as worker:
        wait_for(lambda: hasattr(worker.worker, "_table"), timeout=30, what="the worker to start")
        wait_for(lambda: (o := worker.worker._table.get((queue, 0))) is not None
                 and PauseReason.REFUSED in o.pauses, timeout=60, what="the partition to be held")
        assert worker.error is None
        worker.stop()  # leaves cleanly: the held partition commits nothing
    depth = next(d for d in topic_depths(kafka.bootstrap, [queue], group) if d.topic == queue)
    assert depth.committed is None or depth.committed < 0 or depth.committed == 0  # nothing committed past it
    assert depth.lag == 5  # all five tasks are still there for the next worker


def test_system_exit_in_a_handler_is_a_task_failure_and_the_key_moves_on(kafka: Kafka) -> None:
    app = kqueue.App("robust", kafka.bootstrap, partitions=1)
    queue = unique("sysexit")
    done: list[str] = []
    lock = threading.Lock()

    @app.task(queue=queue, max_attempts=1)
    def leave(payload: dict[str, Any]) -> None:
        sys.exit(3)

    @app.task(queue=queue)
    async def after(payload: dict[str, Any]) -> None:  # async after sync on the same key
        await asyncio.sleep(0)
        with lock:
            done.append("async")

    @app.task(queue=queue)
    def last(payload: dict[str, Any]) -> None:
        with lock:
            done.append("sync")

    leave.enqueue({}, key="k")
    after.enqueue({}, key="k")
    last.enqueue({}, key="k")
    app.flush()
    with ThreadedWorker(app, group=unique("g"), concurrency=1) as worker:
        wait_for(lambda: len(done) == 2, timeout=30, what="the key to move past the failed task")
        stats = worker.stop()
    assert done == ["async", "sync"]
    assert stats.dead_lettered == 1
    [letter] = kafka.read_all(names.dlq_topic(queue), expected=1)
    assert header_map(letter.headers())[names.H_ERROR_TYPE] == "SystemExit"


def test_record_that_breaks_the_json_parser_is_dead_lettered(kafka: Kafka) -> None:
    app = kqueue.App("robust", kafka.bootstrap, partitions=1)
    queue = unique("nested")
    ran: list[int] = []

    @app.task(queue=queue)
    def job(payload: Any) -> None:
        ran.append(1)

    app.ensure_queue(queue)
    raw = Producer({"bootstrap.servers": kafka.bootstrap})
    raw.produce(queue, value=b"[" * 200_000, headers=[(names.H_TYPE, b"job"), (names.H_CONTENT_TYPE, b"\xff\xfe")])
    raw.produce(queue, value=b"{}", headers=[(names.H_TYPE, b"job")])
    assert raw.flush(10) == 0
    with ThreadedWorker(app, group=unique("g")) as worker:
        wait_for(lambda: worker.worker.counts.dead_lettered == 1 and ran == [1], what="dead letter and next task")
        worker.stop()
    [letter] = kafka.read_all(names.dlq_topic(queue), expected=1)
    assert header_map(letter.headers())[names.H_ERROR_TYPE] == "DecodeError"
