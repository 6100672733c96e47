"""The SDK knows its record limit (issue 19, item 6): a task record over it is refused before it is
produced, and one Kafka refuses for its size (a topic whose max.message.bytes is smaller) is reported
the same way: RecordTooLarge, a ValueError, never a DeliveryError that invites a retry. `kqueue
produce` says so in one line."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import NewTopic

import kqueue
from kqueue.core import names
from kqueue.core.errors import DeliveryError, RecordTooLarge
from kqueue.core.oversize import MAX_RECORD_BYTES, record_bytes
from kqueue.core.records import OutRecord, RecordKind
from kqueue.sdk.task import TaskDef
from tests.integration.test_cli import kq
from tests.support.kafka import Kafka, unique


def _app_and_job(kafka: Kafka, queue: str) -> tuple[kqueue.App, TaskDef]:
    app = kqueue.App("limit", kafka.bootstrap, partitions=1)

    @app.task(queue=queue)
    def job(payload: Any) -> None:
        return None

    return app, job


def _small_topic(kafka: Kafka, limit: int = 100_000) -> str:
    """A queue whose topic takes at most `limit` bytes a batch (max.message.bytes), made before kqueue uses it."""
    queue = unique("smalltopic")
    admin = kafka.admin()
    for future in admin.create_topics([NewTopic(queue, 1, 1, config={"max.message.bytes": str(limit)})]).values():
        future.result(timeout=30)
    return queue


def _incompressible(size: int) -> bytes:
    return os.urandom(size // 2).hex().encode()  # lz4 must not shrink it under a topic's limit


def test_a_record_at_the_limit_is_sent_and_one_byte_more_is_refused_before_producing(kafka: Kafka) -> None:
    queue = unique("atlimit")
    app, job = _app_and_job(kafka, queue)
    probe = job.send(b"{}")
    app.flush()
    [msg] = kafka.read_all(queue, expected=1)
    assert dict(msg.headers() or [])[names.H_ID].decode() == probe
    headers = [(name, value or b"") for name, value in msg.headers() or []]
    overhead = record_bytes(OutRecord(RecordKind.DELIVER, queue, b"", msg.key(), headers, None))
    fits = MAX_RECORD_BYTES - overhead  # the headers of every task of this type have the same length

    at_limit = job.send(b"x" * fits)
    app.flush()
    with pytest.raises(RecordTooLarge, match=f"over the {MAX_RECORD_BYTES}-byte limit per record") as caught:
        job.send(b"x" * (fits + 1))
    assert caught.value.limit == MAX_RECORD_BYTES and caught.value.size == MAX_RECORD_BYTES + 1
    assert isinstance(caught.value, ValueError) and not isinstance(caught.value, DeliveryError)
    with pytest.raises(RecordTooLarge, match=f"{MAX_RECORD_BYTES}-byte limit"):
        asyncio.run(job.enqueue_async({"blob": "x" * MAX_RECORD_BYTES}))
    app.flush()  # nothing refused is pending: the producer is fine
    ids = [dict(m.headers() or [])[names.H_ID].decode() for m in kafka.read_all(queue, expected=2)]
    assert ids == [probe, at_limit]


def test_a_topic_with_a_smaller_max_message_bytes_refuses_with_record_too_large(kafka: Kafka) -> None:
    queue = _small_topic(kafka)
    app, job = _app_and_job(kafka, queue)
    job.send(_incompressible(150_000))
    with pytest.raises(RecordTooLarge, match=rf"{queue}: Kafka refused the record .* max\.message\.bytes") as caught:
        app.flush()
    assert caught.value.limit is None and caught.value.size > 150_000
    with pytest.raises(RecordTooLarge, match=r"max\.message\.bytes"):
        asyncio.run(job.enqueue_async({"blob": _incompressible(150_000).decode()}))
    small = job.send(_incompressible(50_000))
    app.flush()
    assert [dict(m.headers() or [])[names.H_ID].decode() for m in kafka.read_all(queue, expected=1)] == [small]


def test_kqueue_produce_says_too_large_in_one_line(kafka: Kafka, tmp_path: Path) -> None:
    big = tmp_path / "big.jsonl"
    big.write_text(json.dumps({"blob": "x" * MAX_RECORD_BYTES}) + "\n")
    queue = unique("clibig")
    result = kq(kafka.bootstrap, "produce", queue, "--type", "job", "--file", str(big))
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in result.stderr
    assert f"over the {MAX_RECORD_BYTES}-byte limit per record" in lines[0]

    small_topic = _small_topic(kafka)
    payload = tmp_path / "payload.jsonl"
    payload.write_text(json.dumps({"blob": _incompressible(150_000).decode()}) + "\n")
    result = kq(kafka.bootstrap, "produce", small_topic, "--type", "job", "--file", str(payload))
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "max.message.bytes" in lines[0], result.stderr
