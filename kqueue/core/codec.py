"""Payload codecs: Avro single-object encoding (C3 01 + CRC-64-AVRO fingerprint + body) and JSON.

Pure: no I/O beyond reading .avsc files when asked to load them.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint, load_schema, to_parsing_canonical_form

from kqueue.core.errors import DecodeError
from kqueue.core.json_rules import MAX_JSON_DEPTH, TOO_DEEP, dumps_checked, value_too_deep

SOE_MAGIC = b"\xc3\x01"
SOE_HEADER_LEN = 10  # 2 magic bytes + 8-byte little-endian fingerprint
CONFLUENT_MAGIC = 0


@dataclass(frozen=True)
class AvroSchema:
    """A parsed Avro schema with its single-object-encoding prefix."""

    name: str
    parsed: Any
    fingerprint: bytes  # 8 bytes, in wire order
    range_check: Callable[[Any, str], None] | None = None
    may_nest_too_deep: bool = False  # recursive (or absurdly deep): payloads are checked for depth

    @property
    def prefix(self) -> bytes:
        return SOE_MAGIC + self.fingerprint

    @classmethod
    def from_dict(cls, schema: dict[str, Any] | Any) -> AvroSchema:
        parsed = parse_schema(schema)
        canonical = to_parsing_canonical_form(parsed)
        fp = bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))
        name = parsed["name"] if isinstance(parsed, dict) and "name" in parsed else canonical
        return cls(name=str(name), parsed=parsed, fingerprint=fp, range_check=_range_checker(parsed),
                   may_nest_too_deep=_nesting(parsed, _named(parsed), frozenset()) > MAX_JSON_DEPTH)

    @classmethod
    def from_file(cls, path: str | Path) -> AvroSchema:
        if not Path(path).is_file():
            raise DecodeError(f"Avro schema file {path} does not exist", "SchemaError")
        try:
            return cls.from_dict(load_schema(str(path)))
        except Exception as exc:  # fastavro reports bad files with its own exception types
            raise DecodeError(f"cannot load Avro schema {path}: {exc}", "SchemaError") from exc

    def short_name(self) -> str:
        return self.name.rsplit(".", 1)[-1]


INT_RANGE = (-(2**31), 2**31 - 1)
LONG_RANGE = (-(2**63), 2**63 - 1)


def _range_checker(schema: Any) -> Callable[[Any, str], None] | None:
    """A check for the int/long values in payloads of `schema` (None if it has none).

    fastavro's writer refuses values of the wrong type but writes e.g. 2**31 into an int, which
    Java then reads as garbage; a full validation pass costs more than the encoding itself.
    """
    if isinstance(schema, str) or (isinstance(schema, dict) and schema.get("type") in ("int", "long")):
        kind = schema if isinstance(schema, str) else schema["type"]
        if kind not in ("int", "long"):
            return None
        low, high = INT_RANGE if kind == "int" else LONG_RANGE

        def check_number(value: Any, path: str) -> None:
            if isinstance(value, int) and not isinstance(value, bool) and not low <= value <= high:
                raise ValueError(f"{path or 'value'} = {value} does not fit an Avro {kind}")

        return check_number
    if isinstance(schema, list):  # union: a number is checked against the widest integer branch
        kinds = {b if isinstance(b, str) else b.get("type") for b in schema}
        widest = "long" if "long" in kinds else "int" if "int" in kinds else None
        return _range_checker(widest) if widest else None
    if not isinstance(schema, dict):
        return None
    kind = schema.get("type")
    if kind == "record":
        checks = [(f["name"], c) for f in schema["fields"] if (c := _range_checker(f["type"])) is not None]
        if not checks:
            return None

        def check_record(value: Any, path: str) -> None:
            if isinstance(value, dict):
                for name, check in checks:
                    check(value.get(name), f"{path}.{name}" if path else name)

        return check_record
    if kind in ("array", "map"):
        inner = _range_checker(schema["items" if kind == "array" else "values"])
        if inner is None:
            return None

        def check_items(value: Any, path: str) -> None:
            items = value.items() if isinstance(value, dict) else enumerate(value or ())
            for index, item in items:
                inner(item, f"{path}[{index}]")

        return check_items
    return None


def _named(parsed: Any) -> dict[str, Any]:
    named = parsed.get("__named_schemas") if isinstance(parsed, dict) else None
    return named if isinstance(named, dict) else {}


def _nesting(schema: Any, named: dict[str, Any], within: frozenset[str]) -> float:
    """How many JSON levels a value of `schema` can nest (records, arrays and maps are one each);
    infinite for a recursive schema. Most schemas are far under the limit, and their payloads need
    no depth check at enqueue."""
    if isinstance(schema, str):
        if schema in within:
            return math.inf
        return _nesting(named[schema], named, within) if schema in named else 0
    if isinstance(schema, list):  # a union: its deepest branch
        return max((_nesting(branch, named, within) for branch in schema), default=0)
    if not isinstance(schema, dict):
        return 0
    kind = schema.get("type")
    if kind in ("record", "error"):
        inside = within | {str(schema.get("name"))}
        return 1 + max((_nesting(f["type"], named, inside) for f in schema.get("fields", ())), default=0)
    if kind == "array":
        return 1 + _nesting(schema.get("items"), named, within)
    if kind == "map":
        return 1 + _nesting(schema.get("values"), named, within)
    return _nesting(kind, named, within) if isinstance(kind, dict | list) else 0


def encode_avro(schema: AvroSchema, payload: Any) -> bytes:
    """Single-object-encode `payload`; a payload that does not fit the schema, or nests deeper than
    MAX_JSON_DEPTH levels, raises ValueError."""
    if schema.may_nest_too_deep and value_too_deep(payload):
        raise ValueError(f"payload is {TOO_DEEP}")
    try:
        if schema.range_check is not None:
            schema.range_check(payload, "")
        buffer = io.BytesIO()
        buffer.write(schema.prefix)
        schemaless_writer(buffer, schema.parsed, payload)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise ValueError(f"payload does not match Avro schema {schema.name}: {exc}") from None
    return buffer.getvalue()


def encode_json(payload: Any) -> bytes:
    """`payload` as compact standard JSON; ValueError if it is not JSON, holds NaN or Infinity, or nests
    deeper than MAX_JSON_DEPTH levels (kqueue.core.json_rules)."""
    return dumps_checked(payload).encode()


class SchemaStore:
    """Known writer schemas by fingerprint, and by record name for lookups by task type."""

    def __init__(self) -> None:
        self._by_fingerprint: dict[bytes, AvroSchema] = {}
        self._by_name: dict[str, AvroSchema] = {}

    def add(self, schema: AvroSchema, *aliases: str) -> AvroSchema:
        self._by_fingerprint.setdefault(schema.fingerprint, schema)
        for name in (schema.name, schema.short_name(), *aliases):
            self._by_name.setdefault(name, schema)
        return schema

    def load_dir(self, folder: str | Path) -> int:
        """Add every `*.avsc` in `folder` (file stem as an alias); returns how many were added."""
        count = 0
        for path in sorted(Path(folder).glob("*.avsc")):
            self.add(AvroSchema.from_file(path), path.stem)
            count += 1
        return count

    def by_name(self, name: str) -> AvroSchema | None:
        return self._by_name.get(name)

    def by_fingerprint(self, fp: bytes) -> AvroSchema | None:
        return self._by_fingerprint.get(fp)


def decode_payload(
    value: bytes | None,
    content_type: str | None,
    reader: AvroSchema | None,
    store: SchemaStore,
) -> Any:
    """Turn a record value into a payload, or raise DecodeError saying why it cannot be."""
    if value is None:
        raise DecodeError("record has no value (a tombstone is not a task)")
    if content_type == "json":
        return _decode_json(value)
    if value[:2] == SOE_MAGIC:
        return _decode_soe(value, reader, store)
    if content_type == "avro":
        if value[:1] == bytes([CONFLUENT_MAGIC]) and len(value) >= 5:
            raise DecodeError("Confluent-framed Avro needs a schema registry, and none is configured",
                              "SchemaError")
        raise DecodeError("kq-content-type is avro but the value is not Avro single-object encoded")
    return _decode_json(value)  # no content type and no Avro magic: JSON is the only other format


def _decode_json(value: bytes) -> Any:
    try:
        return json.loads(value)
    except (UnicodeDecodeError, ValueError) as exc:
        raise DecodeError(f"value is not valid JSON: {exc}") from exc
    except RecursionError:  # a foreign producer's value nested beyond the parser's recursion
        raise DecodeError(f"value is {TOO_DEEP}") from None


def _decode_soe(value: bytes, reader: AvroSchema | None, store: SchemaStore) -> Any:
    if len(value) < SOE_HEADER_LEN:
        raise DecodeError("Avro single-object header is truncated")
    fp = value[2:SOE_HEADER_LEN]
    writer = reader if reader is not None and reader.fingerprint == fp else store.by_fingerprint(fp)
    if writer is None:
        raise DecodeError(f"unknown Avro schema fingerprint {fp.hex()}", "SchemaError")
    try:
        return schemaless_reader(
            io.BytesIO(value[SOE_HEADER_LEN:]),
            writer.parsed,
            reader.parsed if reader is not None and reader is not writer else None,
        )
    except Exception as exc:  # fastavro raises many types on corrupt bodies or unresolvable schemas
        raise DecodeError(f"cannot decode Avro body with schema {writer.name}: {exc}") from exc
