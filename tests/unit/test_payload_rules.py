"""Payloads and results by the JSON rules, through the codec and the worker's result routing (no broker):
nested at most 100 levels, no NaN or Infinity. Only long-standing names are imported here, so these
show how the code before the rules behaved (kept, produced, or a RecursionError)."""

from __future__ import annotations

from typing import Any

import pytest

import kqueue
from kqueue.core.codec import AvroSchema, SchemaStore, decode_payload, encode_avro, encode_json
from kqueue.core.errors import DecodeError
from kqueue.core.status import TaskEvent
from kqueue.worker.routing import result_records
from kqueue.worker.work import WorkItem

PAST_THE_LIMIT = 150  # well past the 100-level limit, well under what Python's json can write
PAST_RECURSION = 3000  # past Python's recursion limit

TREE = {  # a recursive Avro schema: the only kind whose payloads can nest without bound
    "type": "record", "name": "Tree", "namespace": "t",
    "fields": [{"name": "label", "type": "string"},
               {"name": "children", "type": {"type": "array", "items": "t.Tree"}}],
}


def nested(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


def tree(depth: int) -> dict[str, Any]:
    node: dict[str, Any] = {"label": "leaf", "children": []}
    for _ in range(depth // 2 - 1):  # a record and its array are two levels
        node = {"label": "n", "children": [node]}
    return node


@pytest.mark.parametrize("depth", [PAST_THE_LIMIT, PAST_RECURSION])
def test_encode_json_refuses_a_payload_nested_too_deep(depth: int) -> None:
    with pytest.raises(ValueError, match="nested deeper than 100 levels"):
        encode_json({"deep": nested(depth)})


@pytest.mark.parametrize("payload", [float("nan"), {"x": float("inf")}, [1, [float("-inf")]]])
def test_encode_json_refuses_nan_and_infinity(payload: Any) -> None:
    with pytest.raises(ValueError, match="NaN or Infinity"):
        encode_json(payload)


def test_the_sdk_encode_refuses_them_before_anything_is_sent() -> None:
    app = kqueue.App("t", "localhost:1")

    @app.task(queue="q")
    def handle(payload: Any) -> None: ...

    for bad in ({"deep": nested(PAST_THE_LIMIT)}, {"ratio": float("nan")}):
        with pytest.raises(ValueError, match=r"levels|NaN"):
            handle.encode(bad)
    assert handle.encode(nested(100)) == ("[" * 100 + "0" + "]" * 100).encode()


@pytest.mark.parametrize("depth", [PAST_THE_LIMIT, PAST_RECURSION])
def test_encode_avro_refuses_a_recursive_payload_nested_too_deep(depth: int) -> None:
    schema = AvroSchema.from_dict(TREE)
    with pytest.raises(ValueError, match="nested deeper than 100 levels"):
        encode_avro(schema, tree(depth))
    assert decode_payload(encode_avro(schema, tree(100)), "avro", schema, SchemaStore()) == tree(100)


def test_a_json_record_too_deep_to_parse_is_a_decode_error() -> None:
    """A foreign producer's record; before, json.loads' RecursionError escaped decode_payload."""
    with pytest.raises(DecodeError, match="nested deeper than"):
        decode_payload(b"[" * 50_000 + b"]" * 50_000, "json", None, SchemaStore())


def item_returning(result: Any) -> WorkItem:
    app = kqueue.App("t", "localhost:1")

    @app.task(queue="q", keep_result=True)
    def handle(payload: Any) -> Any: ...

    item = WorkItem("q", 0, 7, None, b"{}", {"kq-id": b"task-1"}, "q", task=handle)
    item.result = result
    return item


@pytest.mark.parametrize(("result", "why"), [
    (nested(PAST_THE_LIMIT), "result not kept: the value is nested deeper than 100 levels"),
    (nested(PAST_RECURSION), "result not kept: the value is nested deeper than 100 levels"),
    ({"ratio": float("nan")}, "result not kept: the value holds NaN or Infinity"),
    ({"s": "\ud800"}, "result not kept: a string in it is not Unicode text"),  # before: UnicodeEncodeError
])
def test_a_result_that_breaks_the_rules_is_not_kept_and_says_why(result: Any, why: str) -> None:
    (record,) = result_records(item_returning(result), "", 1)
    assert record.value is not None
    event = TaskEvent.decode(record.value)
    assert (event.status, event.result) == ("completed", None)
    assert (event.error or "").startswith(why)


def test_a_result_at_the_limit_is_kept() -> None:
    (record,) = result_records(item_returning(nested(100)), "", 1)
    assert record.value is not None
    assert TaskEvent.decode(record.value).result == "[" * 100 + "0" + "]" * 100
