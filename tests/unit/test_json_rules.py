"""The JSON rules (kqueue/core/json_rules.py, kqueue/api/strictjson.py): nesting measured without parsing,
NaN and Infinity refused, and stored values that break the rules shown as a marker."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi import HTTPException

from kqueue.api.strictjson import parse_body
from kqueue.core.codec import AvroSchema
from kqueue.core.json_rules import (
    MAX_JSON_DEPTH,
    NOT_FINITE,
    TOO_DEEP,
    dumps_checked,
    loads_checked,
    renderable,
    stored_json,
    text_too_deep,
    value_too_deep,
)


def nested(depth: int, opener: str = "[") -> str:
    """JSON text `depth` levels deep, of arrays or objects."""
    if opener == "[":
        return "[" * depth + "]" * depth
    return '{"a":' * (depth - 1) + "{}" + "}" * (depth - 1)


def nested_value(depth: int) -> Any:
    value: Any = 0
    for n in range(depth):
        value = [value] if n % 2 else {"k": value}
    return value


@pytest.mark.parametrize("opener", ["[", "{"])
def test_text_depth_is_measured_up_to_and_past_the_limit(opener: str) -> None:
    assert not text_too_deep(nested(MAX_JSON_DEPTH, opener))
    assert text_too_deep(nested(MAX_JSON_DEPTH + 1, opener))
    assert text_too_deep(nested(100_000, opener))  # no recursion: any depth is measured
    assert text_too_deep(nested(MAX_JSON_DEPTH + 1, opener).encode())


def test_depth_is_the_deepest_branch_not_the_count_of_brackets() -> None:
    wide = "[" + ",".join(["[[1],{\"a\":[2]}]"] * 5000) + "]"  # 15,000 openers, 3 levels
    assert not text_too_deep(wide)
    mixed = json.dumps(nested_value(MAX_JSON_DEPTH))  # objects and arrays alternating
    assert not text_too_deep(mixed) and text_too_deep(json.dumps(nested_value(MAX_JSON_DEPTH + 1)))
    assert text_too_deep("[" + "[1]," * 50 + nested(MAX_JSON_DEPTH) + "]")  # one deep branch among shallow ones


def test_brackets_inside_strings_are_not_nesting() -> None:
    text = json.dumps({"s": "[" * 500, "t": 'say "[[[[" \\ ok', "u": "\\" * 7 + "[" * 300})
    assert not text_too_deep(text)
    assert text_too_deep('["a\\"' + "[" * 200 + '",' + nested(MAX_JSON_DEPTH) + "]")


def test_unbalanced_brackets_are_left_to_the_parser() -> None:
    assert not text_too_deep("]" * 500)
    assert not text_too_deep("[]" * 300 + "]" * 300)


def test_value_depth_and_cycles() -> None:
    assert not value_too_deep(nested_value(MAX_JSON_DEPTH))
    assert value_too_deep(nested_value(MAX_JSON_DEPTH + 1))
    assert not value_too_deep({"a": 1, "b": "x" * 10_000})
    looped: list[Any] = []
    looped.append(looped)
    assert value_too_deep(looped)


@pytest.mark.parametrize(("value", "why"), [
    (json.loads(nested(MAX_JSON_DEPTH + 1)), TOO_DEEP),
    (nested_value(3000), TOO_DEEP),  # past json.dumps' own recursion: RecursionError before
    ({"x": float("nan")}, NOT_FINITE),
    ([float("inf")], NOT_FINITE),
    ({"y": [1, float("-inf")]}, NOT_FINITE),
])
def test_dumps_checked_names_the_rule_broken(value: Any, why: str) -> None:
    with pytest.raises(ValueError, match=r"^payload ") as raised:
        dumps_checked(value)
    assert why in str(raised.value)


def test_dumps_checked_writes_compact_json_up_to_the_limit() -> None:
    value = nested_value(MAX_JSON_DEPTH)
    assert json.loads(dumps_checked(value)) == value
    assert dumps_checked({"é": [1, 2.5]}) == '{"é":[1,2.5]}'


@pytest.mark.parametrize("text", [nested(MAX_JSON_DEPTH + 1), nested(50_000), '{"a":NaN}', "[Infinity]", "-Infinity"])
def test_loads_checked_refuses_deep_text_and_nan(text: str) -> None:
    with pytest.raises(ValueError, match=r"levels|NaN"):
        loads_checked(text)


def test_renderable_keeps_good_values_and_marks_the_others() -> None:
    good = {"a": [1, 2.5, "x", None, True]}
    assert renderable(good) is good
    assert renderable(nested_value(MAX_JSON_DEPTH + 1)) == {"unrenderable": TOO_DEEP}
    assert renderable({"a": [float("nan")]}) == {"unrenderable": NOT_FINITE}
    assert renderable({"raw": b"\xff\x00", "text": b"caf\xc3\xa9"}) == {"raw": "\xff\x00", "text": "café"}
    looped: dict[str, Any] = {}
    looped["self"] = looped
    assert renderable(looped) == {"unrenderable": TOO_DEEP}


@pytest.mark.parametrize(("text", "shown"), [
    ('{"sum":3}', {"sum": 3}),
    (nested(MAX_JSON_DEPTH + 1), {"unrenderable": TOO_DEEP}),
    (nested(50_000), {"unrenderable": TOO_DEEP}),  # json.loads would overflow: told before parsing
    ('{"ratio":NaN}', {"unrenderable": NOT_FINITE}),
])
def test_stored_json_is_shown_or_marked(text: str, shown: Any) -> None:
    assert stored_json(text) == shown


def test_stored_text_that_is_not_json_is_marked() -> None:
    assert stored_json("{not json")["unrenderable"].startswith("not JSON")


def envelope(payload: str) -> bytes:
    return ('{"type":"t","payload":' + payload + "}").encode()


def test_a_body_holds_a_payload_up_to_the_limit() -> None:
    assert parse_body(envelope(nested(MAX_JSON_DEPTH))) == {"type": "t", "payload": json.loads(nested(MAX_JSON_DEPTH))}


@pytest.mark.parametrize(("payload", "why"), [
    (nested(MAX_JSON_DEPTH + 1), f"payload is {TOO_DEEP}"),
    (nested(980), f"payload is {TOO_DEEP}"),
    (nested(200_000), f"payload is {TOO_DEEP}"),
    ('{"x":NaN}', "NaN is not standard JSON"),
    ("[1,-Infinity]", "-Infinity is not standard JSON"),
])
def test_a_body_too_deep_or_with_nan_is_a_422_saying_why(payload: str, why: str) -> None:
    with pytest.raises(HTTPException) as raised:
        parse_body(envelope(payload))
    assert raised.value.status_code == 422
    [problem] = raised.value.detail
    assert problem["msg"].startswith(why) and problem["loc"][0] == "body"


def test_a_body_that_is_not_json_is_left_to_fastapis_own_answer() -> None:
    with pytest.raises(json.JSONDecodeError):
        parse_body(b'{"type": ')


def test_only_schemas_whose_payloads_can_nest_too_deep_are_checked_at_enqueue() -> None:
    """A payload of most schemas cannot nest past the limit: encode_avro skips the walk for them."""
    send_email = AvroSchema.from_file(Path(__file__).resolve().parents[2] / "schemas" / "send_email.avsc")
    assert not send_email.may_nest_too_deep
    tree = {"type": "record", "name": "Tree", "fields": [
        {"name": "kids", "type": {"type": "array", "items": "Tree"}}]}
    assert AvroSchema.from_dict(tree).may_nest_too_deep
    arrays: Any = "int"
    for _ in range(MAX_JSON_DEPTH - 1):
        arrays = {"type": "array", "items": arrays}
    record = {"type": "record", "name": "R", "fields": [{"name": "a", "type": arrays}]}
    assert not AvroSchema.from_dict(record).may_nest_too_deep  # 1 + 99 levels
    deeper = {"type": "record", "name": "R", "fields": [{"name": "a", "type": {"type": "map", "values": arrays}}]}
    assert AvroSchema.from_dict(deeper).may_nest_too_deep
