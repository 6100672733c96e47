"""Decoder.decode_batch's fast path yields exactly what Decoder.decode would, record by record."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kqueue
from kqueue.core import names
from kqueue.core.codec import SOE_MAGIC, AvroSchema, encode_avro, encode_json
from kqueue.worker.decode import Decoder
from kqueue.worker.work import Failure, WorkItem
from tests.support.scripted_edge import ScriptedRecord

SEND_EMAIL = AvroSchema.from_file(Path(__file__).resolve().parents[2] / "schemas" / "send_email.avsc")
OTHER = AvroSchema.from_dict({"type": "record", "name": "Other", "fields": [{"name": "n", "type": "long"}]})
# SendEmail as another version wrote it, fields in another order: its bytes also read as SEND_EMAIL
# without an error, to a different payload; only resolution by the writer's schema reads them right.
REORDERED = AvroSchema.from_dict({**SEND_EMAIL.parsed, "fields": [
    f for name in ("subject", "to", "body", "priority", "tags", "reply_to")
    for f in SEND_EMAIL.parsed["fields"] if f["name"] == name]})
EMAIL = {"to": "a@example.com", "subject": "hi", "body": "x", "priority": 1, "tags": ["t"], "reply_to": None}


def _record(value: bytes | None, headers: list[tuple[str, bytes]] | None, topic: str = "mail", offset: int = 0,
        key: bytes | None = b"k") -> ScriptedRecord:
    """A consumed record as the decoder reads it (partition 3)."""
    return ScriptedRecord(topic, 3, offset, key, value, headers, 0)  # type: ignore[arg-type]  # None: no headers


def _headers(task_type: str | None, content_type: str | None, **extra: str) -> list[tuple[str, bytes]]:
    pairs = [(names.H_ID, b"id-1"), (names.H_ENQUEUED_AT, b"1700000000000")]
    if task_type is not None:
        pairs.append((names.H_TYPE, task_type.encode()))
    if content_type is not None:
        pairs.append((names.H_CONTENT_TYPE, content_type.encode()))
    pairs += [(name, value.encode()) for name, value in extra.items()]
    return pairs


def _app() -> kqueue.App:
    app = kqueue.App("decode-test", "127.0.0.1:1")
    app.task(queue="mail", name="email", schema=SEND_EMAIL.parsed)(lambda payload: None)
    app.task(queue="mail", name="plain")(lambda payload: None)
    app.schemas.add(OTHER)
    app.schemas.add(REORDERED)
    return app


def _records() -> list[ScriptedRecord]:
    avro, other = encode_avro(SEND_EMAIL, EMAIL), encode_avro(OTHER, {"n": 7})
    cases: list[tuple[bytes | None, list[tuple[str, bytes]] | None, str]] = [
        (avro, _headers("email", "avro"), "mail"),  # as the SDK writes it
        (avro, _headers("email", None), "mail"),  # no content type (Avro by its magic)
        (avro, _headers("email", "avro"), "mail.high"),  # another lane of the queue
        (other, _headers("email", "avro"), "mail"),  # another schema the store knows (resolution)
        (encode_avro(OTHER, {"n": 1})[:-1] + b"", _headers("email", "avro"), "mail"),  # body cut short
        (avro[:7], _headers("email", "avro"), "mail"),  # header cut short
        (SOE_MAGIC + b"\x00" * 8 + b"\x02", _headers("email", "avro"), "mail"),  # unknown fingerprint
        (avro + b"\x00\x00", _headers("email", "avro"), "mail"),  # trailing bytes
        (encode_json(EMAIL), _headers("email", "json"), "mail"),  # JSON to an Avro task
        (encode_json({"a": [1, 2]}), _headers("plain", "json"), "mail"),
        (encode_json({"a": 1}), _headers("plain", None), "mail"),  # JSON by default
        (b"{not json", _headers("plain", "json"), "mail"),
        (b"[" * 5000, _headers("plain", "json"), "mail"),  # nested too deep for the parser
        (avro, _headers("plain", "avro"), "mail"),  # Avro to a JSON task: by the store
        (b"\x00\x00\x00\x00\x01abc", _headers("plain", "avro"), "mail"),  # Confluent framing
        (None, _headers("email", "avro"), "mail"),  # a tombstone
        (avro, _headers("nope", "avro"), "mail"),  # unknown type
        (avro, _headers(None, "avro"), "mail"),  # no type
        (avro, _headers("email", "xml"), "mail"),  # unknown content type
        (avro, None, "mail"),  # no headers at all
        (avro, _headers("email", "avro", **{names.H_ENQUEUED_AT: "soon"}), "mail"),  # unreadable enqueued-at
        (avro, _headers("email", "avro", **{names.H_IDEMPOTENCY_KEY: "idem"}), "mail"),
        (encode_avro(REORDERED, EMAIL), _headers("email", "avro"), "mail"),
    ]
    return [_record(value, headers, topic, offset=i, key=None if i % 5 == 0 else b"k%d" % i)
            for i, (value, headers, topic) in enumerate(cases)]


def _view(decoded: tuple[WorkItem, Failure | None]) -> dict[str, Any]:
    item, failure = decoded
    return {"where": (item.topic, item.partition, item.offset, item.key, item.value), "queue": item.queue,
            "headers": item.raw_headers, "task": item.task, "payload": item.payload,
            "enqueued_at_ms": item.enqueued_at_ms, "lane": item.lane, "kind": item.kind,
            "failure": (failure.error_type, failure.message, failure.retryable) if failure is not None else None}


def test_every_record_decodes_in_a_batch_as_it_does_alone() -> None:
    for read_enqueued_at in (False, True):
        records = _records()
        app = _app()
        alone = Decoder(app, read_enqueued_at).decode
        expected = [_view(alone(msg)) for msg in records]  # type: ignore[arg-type]
        got = [_view(d) for d in Decoder(app, read_enqueued_at).decode_batch(records)]  # type: ignore[arg-type]
        for want, have in zip(expected, got, strict=True):
            assert have == want
        assert sum(1 for view in got if view["failure"] is None) >= 8  # the cases above that run


def test_well_formed_records_take_the_fast_path_and_others_the_careful_one() -> None:
    decoder = Decoder(_app())
    careful: list[int] = []
    decode = decoder.decode

    def counted(msg: Any) -> tuple[WorkItem, Failure | None]:
        careful.append(msg.offset())
        return decode(msg)

    decoder.decode = counted  # type: ignore[method-assign]
    records = _records()
    decoded = decoder.decode_batch(records)  # type: ignore[arg-type]
    # The SDK's own shapes: the task's schema (trailing bytes are left unread either way), or JSON.
    fast = {0, 1, 2, 7, 8, 9, 20, 21}
    assert sorted(careful) == sorted(set(range(len(records))) - fast)
    assert all(decoded[i][1] is None for i in fast)
    assert decoded[0][0].payload == EMAIL
    assert decoded[22][0].payload == EMAIL  # resolved from the writer's field order
