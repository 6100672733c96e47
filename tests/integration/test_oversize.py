"""A failing task near Kafka's size limit never stops its queue (issue 9, item 5): its error headers
are trimmed to fit, and a record that still cannot be written is dead-lettered by reference, which
`kqueue dlq show` and `kqueue dlq replay` follow back to the payload."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from typing import Any

import pytest
from confluent_kafka import Message
from confluent_kafka.cimpl import NewTopic

import kqueue
from kqueue.core import names
from kqueue.core.headers import header_map
from kqueue.core.oversize import MAX_RECORD_BYTES
from kqueue.core.retry import RetryPolicy
from kqueue.transport.inspect import topic_depths
from tests.integration.test_cli import kq
from tests.support.kafka import Kafka, unique
from tests.support.worker import ThreadedWorker, wait_for

LONG_ERROR = "the upstream said no: " + "because " * 2000


def kafka_size(msg: Message) -> int:
    """The size librdkafka checks against message.max.bytes: key, value and serialized headers."""
    headers = msg.headers() or []
    return len(msg.key() or b"") + len(msg.value() or b"") + sum(len(n) + len(v or b"") + 2 for n, v in headers)


def blob_app(kafka: Kafka, queue: str, attempts: int,
             blob_chars: int) -> tuple[kqueue.App, list[str], str, threading.Event]:
    """A queue holding one big task (failing while the returned event is set, as it is at first) and,
    behind it on its key, five small ones. Returns the app, what ran (small-N, or the blob's digest),
    the blob's digest and the event."""
    app = kqueue.App("oversize", kafka.bootstrap, partitions=1)
    fail = threading.Event()
    fail.set()
    done: list[str] = []

    @app.task(queue=queue, max_attempts=attempts, backoff=RetryPolicy(base=0.1, jitter=0.0))
    def blob(payload: dict[str, Any]) -> None:
        if fail.is_set():
            raise ValueError(LONG_ERROR)
        done.append(hashlib.sha256(payload["blob"].encode()).hexdigest())

    @app.task(queue=queue)
    def small(payload: dict[str, Any]) -> None:
        done.append(f"small-{payload['n']}")

    data = os.urandom(blob_chars // 2 + 1).hex()[:blob_chars]  # incompressible: lz4 must not shrink it
    blob.enqueue({"blob": data}, key="big")
    for n in range(5):
        small.enqueue({"n": n}, key="big")  # same key: they wait for the blob's fate
    app.flush()
    return app, done, hashlib.sha256(data.encode()).hexdigest(), fail


def committed_to_the_end(kafka: Kafka, queue: str, group: str) -> bool:
    """The group's position is past the queue's last record (transaction markers may follow it)."""
    last = max(m.offset() for m in kafka.read_all(queue, timeout=2))
    depth = next(d for d in topic_depths(kafka.bootstrap, [queue], group) if d.topic == queue)
    return depth.committed is not None and depth.committed > last


@pytest.mark.parametrize("transactions", [True, False])
def test_a_failing_task_near_the_limit_retries_and_dead_letters_with_its_error_trimmed(
        kafka: Kafka, transactions: bool) -> None:
    queue, group = unique("nearlimit"), unique("g")
    app, done, digest, _ = blob_app(kafka, queue, attempts=2, blob_chars=MAX_RECORD_BYTES - 3_000)
    [task] = kafka.read_all(queue, expected=6)[:1]
    # Untrimmed, the retry (this plus ~5 KB of error message and trace) would be over the limit.
    assert MAX_RECORD_BYTES - 5_000 < kafka_size(task) < MAX_RECORD_BYTES - 2_000

    with ThreadedWorker(app, group=group, transactions=transactions) as worker:
        wait_for(lambda: worker.worker.counts.dead_lettered == 1 and len(done) == 5, timeout=60,
                 what="the blob to be retried and dead-lettered, and the small tasks to run")
        wait_for(lambda: committed_to_the_end(kafka, queue, group), what="the queue to be committed")
        stats = worker.stop()
    assert stats.retried == 1 and stats.completed == 5
    [letter] = kafka.read_all(names.dlq_topic(queue), expected=1)
    headers = header_map(letter.headers())
    assert hashlib.sha256(json.loads(letter.value() or b"{}")["blob"].encode()).hexdigest() == digest
    assert names.H_PAYLOAD_AT not in headers and names.H_ERROR_TRACE not in headers
    assert headers[names.H_ERROR_TYPE] == "ValueError"
    assert headers[names.H_ERROR_MESSAGE].startswith("the upstream said no")
    assert kafka_size(letter) <= MAX_RECORD_BYTES


def test_a_task_whose_retry_cannot_fit_is_dead_lettered_by_reference_and_replays(kafka: Kafka) -> None:
    queue, group = unique("atlimit"), unique("g")
    app, done, digest, fail = blob_app(kafka, queue, attempts=3, blob_chars=MAX_RECORD_BYTES - 450)
    [task] = kafka.read_all(queue, expected=6)[:1]
    # No room for a retry's headers (origin, target, times, error: ~300 bytes), room for a replay's (~100).
    assert MAX_RECORD_BYTES - 330 < kafka_size(task) < MAX_RECORD_BYTES - 120

    with ThreadedWorker(app, group=group) as worker:
        wait_for(lambda: worker.worker.counts.dead_lettered == 1 and len(done) == 5, timeout=60,
                 what="the blob to be dead-lettered by reference and the small tasks to run")
        wait_for(lambda: committed_to_the_end(kafka, queue, group), what="the queue to be committed")
        assert worker.worker.counts.retried == 0
        [letter] = kafka.read_all(names.dlq_topic(queue), expected=1)
        headers = header_map(letter.headers())
        assert letter.value() is None
        assert headers[names.H_PAYLOAD_AT] == f"{queue}/0/{task.offset()}"
        assert headers[names.H_ERROR_TYPE] == "RecordTooLarge"
        assert "retry record" in headers[names.H_ERROR_MESSAGE] and "ValueError" in headers[names.H_ERROR_MESSAGE]

        shown = kq(kafka.bootstrap, "dlq", "show", queue, headers[names.H_ID])
        assert shown.returncode == 0, shown.stderr
        assert f"by reference, read from {queue}/0/{task.offset()}" in shown.stdout

        fail.clear()  # fixed: the replayed task now runs to completion with its full payload
        replay = kq(kafka.bootstrap, "dlq", "replay", queue, "--all")
        assert replay.returncode == 0 and "replayed 1 dead letter(s)" in replay.stdout, replay.stderr
        wait_for(lambda: digest in done, what="the replayed blob to complete")
        worker.stop()


@pytest.mark.parametrize("transactions", [True, False])
def test_a_dead_letter_the_dlq_topic_refuses_goes_by_reference(kafka: Kafka, transactions: bool) -> None:
    queue, group = unique("smalldlq"), unique("g")
    # An operator made the DLQ smaller than the queue: the broker refuses the copy, not librdkafka.
    admin = kafka.admin()
    for future in admin.create_topics([NewTopic(names.dlq_topic(queue), 1, 1,
                                                config={"max.message.bytes": "50000"})]).values():
        future.result(timeout=30)
    app, done, _, _ = blob_app(kafka, queue, attempts=1, blob_chars=200_000)
    with ThreadedWorker(app, group=group, transactions=transactions) as worker:
        wait_for(lambda: worker.worker.counts.dead_lettered == 1 and len(done) == 5, timeout=60,
                 what="the blob to be dead-lettered by reference and the small tasks to run")
        wait_for(lambda: committed_to_the_end(kafka, queue, group), what="the queue to be committed")
        worker.stop()
    letters = kafka.read_all(names.dlq_topic(queue), expected=1)
    assert len(letters) == 1  # only the reference landed, in either mode
    headers = header_map(letters[0].headers())
    assert letters[0].value() is None and headers[names.H_PAYLOAD_AT] == f"{queue}/0/0"
    assert headers[names.H_ERROR_TYPE] == "ValueError"  # a dead letter keeps its own error
