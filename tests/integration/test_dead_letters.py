"""Poison, undecodable and unknown-type records land in Q.dlq with reasons; the worker keeps going."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

import kqueue
from kqueue.core import names
from kqueue.core.codec import AvroSchema
from kqueue.core.headers import header_map
from tests.support.kafka import Kafka, unique
from tests.support.worker import ThreadedWorker, wait_for

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


def test_bad_records_are_dead_lettered_with_reasons(kafka: Kafka) -> None:
    app = kqueue.App("dlq", kafka.bootstrap, partitions=1, schemas_dir=SCHEMAS)
    queue = unique("dlq")
    done: list[str] = []
    lock = threading.Lock()

    @app.task(queue=queue, schema="send_email.avsc", max_attempts=1)  # no retries: straight to the DLQ
    def send_email(payload: dict[str, Any]) -> None:
        if payload["to"] == "poison@x.org":
            raise RuntimeError("smtp exploded")
        with lock:
            done.append(payload["to"])

    @app.task(queue=queue)
    def plain(payload: dict[str, Any]) -> None:
        with lock:
            done.append(f"plain-{payload['n']}")

    app.ensure_queue(queue)
    raw = Producer({"bootstrap.servers": kafka.bootstrap, "enable.idempotence": True})
    other_schema = AvroSchema.from_dict({"type": "record", "name": "Other", "fields": [{"name": "x", "type": "int"}]})
    poison: list[tuple[bytes, list[tuple[str, bytes]], str]] = [
        # Confluent framing (00 + schema id) but no registry configured
        (b"\x00garbage", [(names.H_TYPE, b"send_email"), (names.H_CONTENT_TYPE, b"avro")], "SchemaError"),
        (b"garbage!", [(names.H_TYPE, b"send_email"), (names.H_CONTENT_TYPE, b"avro")], "DecodeError"),
        (b"{}", [(names.H_TYPE, b"nobody_handles_me")], "UnknownTaskType"),
        (other_schema.prefix + b"\x02", [(names.H_TYPE, b"send_email")], "SchemaError"),
        (b"not json {", [(names.H_TYPE, b"plain"), (names.H_CONTENT_TYPE, b"json")], "DecodeError"),
        (b"\xc3\x01\x01", [(names.H_TYPE, b"send_email")], "DecodeError"),  # truncated SOE header
    ]
    for value, headers, _ in poison:
        raw.produce(queue, value=value, key=b"k", headers=headers)
    assert raw.flush(10) == 0
    failing_id = send_email.enqueue({"to": "poison@x.org"}, key="k")
    good = [f"u{i}@x.org" for i in range(20)]
    for address in good:
        send_email.enqueue({"to": address}, key="k")
    # A foreign producer's JSON record without kq-id: handled, given a derived id.
    raw.produce(queue, value=json.dumps({"n": 1}).encode(), key=b"k",
                headers=[(names.H_TYPE, b"plain"), (names.H_CONTENT_TYPE, b"json")])
    assert raw.flush(10) == 0
    app.flush()

    with ThreadedWorker(app, group=unique("g"), concurrency=4) as worker:
        wait_for(lambda: len(done) == len(good) + 1 or worker.error is not None, what="good tasks after poison")
        assert worker.error is None, worker.error
        wait_for(lambda: worker.worker.counts.dead_lettered == len(poison) + 1, what="dead letters")
        stats = worker.stop()
    assert sorted(done) == sorted([*good, "plain-1"])
    assert stats.dead_lettered == len(poison) + 1

    letters = kafka.read_all(names.dlq_topic(queue), expected=len(poison) + 1)
    assert len(letters) == len(poison) + 1
    by_value = {m.value(): header_map(m.headers()) for m in letters}
    for value, _, error_type in poison:
        headers = by_value[value]  # value untouched
        assert headers[names.H_ERROR_TYPE] == error_type
        assert headers[names.H_ERROR_MESSAGE]
        assert headers[names.H_ORIGIN].startswith(f"{queue}/0/")
        assert int(headers[names.H_FAILED_AT]) > 0
        assert headers[names.H_ID]
    failed = next(h for h in by_value.values() if h.get(names.H_ID) == failing_id)
    assert failed[names.H_ERROR_TYPE] == "RuntimeError"
    assert failed[names.H_ERROR_MESSAGE] == "smtp exploded"
    assert "smtp exploded" in failed[names.H_ERROR_TRACE] and "Traceback" in failed[names.H_ERROR_TRACE]
    assert all(m.key() == b"k" and m.partition() == 0 for m in letters)
