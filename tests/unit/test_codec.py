"""Avro single-object encoding and JSON codecs, checked against vectors from Apache Avro (Java)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from kqueue.core.codec import (
    SOE_HEADER_LEN,
    SOE_MAGIC,
    AvroSchema,
    SchemaStore,
    decode_payload,
    encode_avro,
    encode_json,
)
from kqueue.core.errors import DecodeError, KqueueError

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
SEND_EMAIL = SCHEMAS / "send_email.avsc"
VECTORS = json.loads((SCHEMAS / "testdata" / "avro_soe.json").read_text(encoding="utf-8"))
IDS = [f"{i}-{v['payload'].get('to', '')[:20]}" for i, v in enumerate(VECTORS)]

# The defaults declared in send_email.avsc: the Java generator's omitted fields take these.
DEFAULTS: dict[str, Any] = {"subject": "", "body": "", "priority": 0, "tags": [], "reply_to": None}


@pytest.fixture(scope="module")
def schema() -> AvroSchema:
    return AvroSchema.from_file(SEND_EMAIL)


@pytest.fixture()
def store(schema: AvroSchema) -> SchemaStore:
    s = SchemaStore()
    s.add(schema)
    return s


def full_record(payload: dict[str, Any]) -> dict[str, Any]:
    return {"to": payload["to"], **{k: payload.get(k, d) for k, d in DEFAULTS.items()}}


# -- the vectors ----------------------------------------------------------------------------------

def test_vectors_cover_omitted_fields() -> None:
    assert len(VECTORS) >= 10
    assert all(v["schema"] == "send_email.avsc" for v in VECTORS)
    # Several Java payloads omit fields; those were encoded with the schema defaults.
    assert any(set(v["payload"]) != {"to", *DEFAULTS} for v in VECTORS)
    assert any(set(v["payload"]) == {"to"} for v in VECTORS)


def test_fingerprint_matches_java(schema: AvroSchema) -> None:
    for v in VECTORS:
        assert schema.fingerprint.hex() == v["fingerprint_hex"]
        # fingerprint_long is SchemaNormalization.parsingFingerprint64: little-endian on the wire.
        assert int.from_bytes(schema.fingerprint, "little", signed=True) == v["fingerprint_long"]
    assert len(schema.fingerprint) == 8
    assert schema.prefix == SOE_MAGIC + schema.fingerprint
    assert len(schema.prefix) == SOE_HEADER_LEN
    assert schema.name == "dev.kqueue.examples.SendEmail"
    assert schema.short_name() == "SendEmail"


@pytest.mark.parametrize("vector", VECTORS, ids=IDS)
def test_encode_avro_matches_java_bytes(schema: AvroSchema, vector: dict) -> None:
    # Fed the payload exactly as Java saw it (omitted fields absent): fastavro fills the defaults,
    # so the bytes match Java's BinaryMessageEncoder byte for byte.
    assert encode_avro(schema, vector["payload"]).hex() == vector["hex"]


@pytest.mark.parametrize("vector", VECTORS, ids=IDS)
def test_encode_full_record_matches_java_bytes(schema: AvroSchema, vector: dict) -> None:
    assert encode_avro(schema, full_record(vector["payload"])).hex() == vector["hex"]


@pytest.mark.parametrize("vector", VECTORS, ids=IDS)
@pytest.mark.parametrize("content_type", ["avro", None])
def test_decode_payload_of_java_bytes(
    schema: AvroSchema, store: SchemaStore, vector: dict, content_type: str | None
) -> None:
    value = bytes.fromhex(vector["hex"])
    assert decode_payload(value, content_type, None, store) == full_record(vector["payload"])


@pytest.mark.parametrize("vector", VECTORS, ids=IDS)
def test_decode_with_reader_equal_to_writer_needs_no_store(schema: AvroSchema, vector: dict) -> None:
    value = bytes.fromhex(vector["hex"])
    assert decode_payload(value, "avro", schema, SchemaStore()) == full_record(vector["payload"])


def test_roundtrip_unicode_and_extremes(schema: AvroSchema, store: SchemaStore) -> None:
    payload = {"to": "ü@例え.jp", "subject": "🎉" * 300, "priority": -(2**31), "tags": ["x"] * 200,
               "reply_to": "ответ"}
    encoded = encode_avro(schema, payload)
    assert encoded.startswith(schema.prefix)
    assert decode_payload(encoded, "avro", None, store) == full_record(payload)


# -- JSON -------------------------------------------------------------------------------------------

def test_encode_json_is_compact_utf8() -> None:
    data = encode_json({"to": "josé", "n": [1, 2]})
    assert data == '{"to":"josé","n":[1,2]}'.encode()


@pytest.mark.parametrize("content_type", ["json", None])
def test_decode_json(store: SchemaStore, content_type: str | None) -> None:
    payload = {"to": "josé@example.com", "tags": ["日本"], "n": 3, "x": None}
    assert decode_payload(encode_json(payload), content_type, None, store) == payload


def test_decode_json_scalars_and_lists(store: SchemaStore) -> None:
    assert decode_payload(b"[1,2,3]", "json", None, store) == [1, 2, 3]
    assert decode_payload(b"42", None, None, store) == 42
    assert decode_payload(b'"s"', "json", None, store) == "s"


def test_json_content_type_wins_over_avro_magic(schema: AvroSchema, store: SchemaStore) -> None:
    # kq-content-type json means JSON even if the bytes happen to start like Avro SOE.
    value = bytes.fromhex(VECTORS[0]["hex"])
    with pytest.raises(DecodeError, match="not valid JSON"):
        decode_payload(value, "json", None, store)


# -- errors ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("cut", [2, 3, 9])
def test_truncated_soe_header(schema: AvroSchema, store: SchemaStore, cut: int) -> None:
    value = encode_avro(schema, {"to": "a"})[:cut]
    with pytest.raises(DecodeError, match="truncated") as info:
        decode_payload(value, "avro", None, store)
    assert isinstance(info.value, KqueueError)


def test_unknown_fingerprint(store: SchemaStore) -> None:
    value = SOE_MAGIC + bytes.fromhex("0102030405060708") + b"\x02a"
    with pytest.raises(DecodeError) as info:
        decode_payload(value, "avro", None, store)
    assert info.value.error_type == "SchemaError"
    assert "0102030405060708" in str(info.value)
    assert "fingerprint" in str(info.value)


def test_unknown_fingerprint_with_unrelated_reader(store: SchemaStore) -> None:
    reader = AvroSchema.from_file(SCHEMAS / "task_event.avsc")
    value = SOE_MAGIC + b"\xff" * 8 + b"\x00"
    with pytest.raises(DecodeError) as info:
        decode_payload(value, None, reader, store)
    assert info.value.error_type == "SchemaError"


def test_confluent_framing_needs_a_registry(store: SchemaStore) -> None:
    value = b"\x00" + (17).to_bytes(4, "big") + b"\x02a\x00\x00\x00\x00\x00"
    with pytest.raises(DecodeError) as info:
        decode_payload(value, "avro", None, store)
    assert info.value.error_type == "SchemaError"
    assert "registry" in str(info.value)
    assert "Confluent" in str(info.value)


@pytest.mark.parametrize("value", [b"\x00\x00", b"{}", b"plain", b"\xc3"])
def test_avro_content_type_without_soe(store: SchemaStore, value: bytes) -> None:
    with pytest.raises(DecodeError, match="not Avro single-object encoded") as info:
        decode_payload(value, "avro", None, store)
    assert info.value.error_type == "DecodeError"


@pytest.mark.parametrize("value", [b"not json", b"{", b"\xff\xfe\x00", b"", b"\x00\x00\x00\x00\x01\x02"])
@pytest.mark.parametrize("content_type", ["json", None])
def test_not_json(store: SchemaStore, value: bytes, content_type: str | None) -> None:
    with pytest.raises(DecodeError, match="not valid JSON") as info:
        decode_payload(value, content_type, None, store)
    assert info.value.error_type == "DecodeError"


@pytest.mark.parametrize("content_type", ["avro", "json", None])
def test_tombstone(store: SchemaStore, content_type: str | None) -> None:
    with pytest.raises(DecodeError, match="tombstone"):
        decode_payload(None, content_type, None, store)


def test_corrupt_avro_body(schema: AvroSchema, store: SchemaStore) -> None:
    good = encode_avro(schema, {"to": "alice@example.com", "subject": "hello"})
    with pytest.raises(DecodeError, match="cannot decode Avro body") as info:
        decode_payload(good[:-8], "avro", None, store)  # body cut mid-string
    assert schema.name in str(info.value)


def test_encode_missing_required_field(schema: AvroSchema) -> None:
    with pytest.raises(ValueError, match="SendEmail") as info:
        encode_avro(schema, {"subject": "no recipient"})
    assert "to" in str(info.value)


@pytest.mark.parametrize(
    "payload",
    [
        {"to": None},
        {"to": "a", "priority": "high"},
        {"to": "a", "tags": [1, 2]},
        None,
    ],
)
def test_encode_wrong_types(schema: AvroSchema, payload: Any) -> None:
    with pytest.raises(ValueError, match=re.escape("payload does not match Avro schema dev.kqueue.examples.SendEmail")):
        encode_avro(schema, payload)


@pytest.mark.parametrize("priority", [2**31, -(2**31) - 1])
def test_encode_int_out_of_range_is_rejected(schema: AvroSchema, priority: int) -> None:
    # encode_avro promises "a payload that does not fit the schema raises ValueError". An Avro
    # int is 32-bit: a larger value written as a 64-bit varint cannot be read back as an int by
    # other Avro implementations (Java's BinaryDecoder.readInt), so it must be refused here.
    with pytest.raises(ValueError, match="SendEmail"):
        encode_avro(schema, {"to": "a", "priority": priority})


# -- schema loading and evolution ------------------------------------------------------------------

def test_from_file_unknown_type_is_schema_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.avsc"
    path.write_text('{"type": "record", "name": "X", "fields": [{"name": "a", "type": "nosuchtype"}]}')
    with pytest.raises(DecodeError) as info:
        AvroSchema.from_file(path)
    assert info.value.error_type == "SchemaError"
    assert str(path) in str(info.value)


def test_from_file_missing_file_is_schema_error(tmp_path: Path) -> None:
    # from_file catches OSError to report "cannot load Avro schema ..." as a DecodeError.
    path = tmp_path / "missing.avsc"
    with pytest.raises(DecodeError) as info:
        AvroSchema.from_file(path)
    assert info.value.error_type == "SchemaError"


def test_from_file_malformed_json_is_schema_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.avsc"
    path.write_text("{not json")
    with pytest.raises(DecodeError) as info:
        AvroSchema.from_file(path)
    assert info.value.error_type == "SchemaError"


def test_from_dict_same_fingerprint_as_file(schema: AvroSchema) -> None:
    as_dict = json.loads(SEND_EMAIL.read_text(encoding="utf-8"))
    again = AvroSchema.from_dict(as_dict)
    assert again.fingerprint == schema.fingerprint
    assert again.name == schema.name
    # doc and field order matter differently: doc is not part of the canonical form, order is.
    as_dict["doc"] = "something else"
    assert AvroSchema.from_dict(as_dict).fingerprint == schema.fingerprint
    as_dict["fields"] = list(reversed(as_dict["fields"]))
    assert AvroSchema.from_dict(as_dict).fingerprint != schema.fingerprint


def _evolved(extra_fields: list[dict[str, Any]], drop: tuple[str, ...] = ()) -> AvroSchema:
    as_dict = json.loads(SEND_EMAIL.read_text(encoding="utf-8"))
    as_dict["fields"] = [f for f in as_dict["fields"] if f["name"] not in drop] + extra_fields
    return AvroSchema.from_dict(as_dict)


def test_reader_schema_adds_field_with_default(schema: AvroSchema, store: SchemaStore) -> None:
    reader = _evolved([{"name": "locale", "type": "string", "default": "en"},
                       {"name": "retries", "type": "long", "default": 3}])
    assert reader.fingerprint != schema.fingerprint
    for v in VECTORS:
        decoded = decode_payload(bytes.fromhex(v["hex"]), "avro", reader, store)
        assert decoded == {**full_record(v["payload"]), "locale": "en", "retries": 3}


def test_reader_schema_drops_a_field(store: SchemaStore) -> None:
    reader = _evolved([], drop=("body", "tags"))
    decoded = decode_payload(bytes.fromhex(VECTORS[1]["hex"]), "avro", reader, store)
    expected = full_record(VECTORS[1]["payload"])
    del expected["body"], expected["tags"]
    assert decoded == expected


def test_evolution_needs_the_writer_in_the_store() -> None:
    reader = _evolved([{"name": "locale", "type": "string", "default": "en"}])
    with pytest.raises(DecodeError) as info:
        decode_payload(bytes.fromhex(VECTORS[0]["hex"]), "avro", reader, SchemaStore())
    assert info.value.error_type == "SchemaError"


def test_incompatible_reader_schema(store: SchemaStore) -> None:
    reader = _evolved([{"name": "locale", "type": "string"}])  # no default: cannot be resolved
    with pytest.raises(DecodeError, match="cannot decode Avro body"):
        decode_payload(bytes.fromhex(VECTORS[0]["hex"]), "avro", reader, store)


# -- SchemaStore ----------------------------------------------------------------------------------

def test_store_lookups(schema: AvroSchema) -> None:
    s = SchemaStore()
    assert s.by_name("SendEmail") is None
    assert s.by_fingerprint(schema.fingerprint) is None
    assert s.add(schema, "send_email", "email") is schema
    for name in ("dev.kqueue.examples.SendEmail", "SendEmail", "send_email", "email"):
        assert s.by_name(name) is schema
    assert s.by_fingerprint(schema.fingerprint) is schema
    assert s.by_name("sendemail") is None
    # The first schema registered under a name or fingerprint stays.
    other = AvroSchema.from_dict(json.loads(SEND_EMAIL.read_text(encoding="utf-8")))
    s.add(other, "email")
    assert s.by_name("email") is schema
    assert s.by_fingerprint(schema.fingerprint) is schema


def test_store_load_dir() -> None:
    s = SchemaStore()
    count = s.load_dir(SCHEMAS)
    assert count == len(list(SCHEMAS.glob("*.avsc")))
    assert count >= 3
    email = s.by_name("send_email")
    assert email is not None
    assert email.fingerprint.hex() == VECTORS[0]["fingerprint_hex"]
    assert s.by_name("TaskEvent") is s.by_name("task_event") is not None
    assert SchemaStore().load_dir(SCHEMAS / "testdata") == 0
