"""What kqueue accepts as JSON (payloads, kept results), and how a stored value that breaks the rules is
shown instead. Pure.

The rules: arrays and objects nest at most MAX_JSON_DEPTH levels, and numbers are finite (no NaN or
Infinity, which Python writes and standard JSON has no form for). The depth limit sits far below what
any reader of the value copes with (Python's recursion limit near 1000, pydantic's serializer at 255,
serde_json's default 128), so a task accepted at enqueue can always be decoded, run and shown.
Values read back that break them (written by an older kqueue or a foreign producer) are replaced by
`{"unrenderable": why}` rather than failing the page that shows them.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from typing import Any

MAX_JSON_DEPTH = 100  # levels of nested arrays/objects in a payload or a kept result; `1` is `[]`
TOO_DEEP = f"nested deeper than {MAX_JSON_DEPTH} levels (kqueue's JSON depth limit)"
NOT_FINITE = "holds NaN or Infinity, which standard JSON has no form for"

_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"', re.S)  # a JSON string literal, escapes included
_OPEN_CLOSE = bytes.maketrans(b"{}", b"[]")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def text_too_deep(text: bytes | str, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when the JSON text nests arrays/objects deeper than `limit`, found without parsing it (so a
    text too deep for the parser's recursion is told apart). Linear, and in C but for the loop over
    removal rounds; text that is not JSON answers False unless its brackets nest too deep.
    """
    if isinstance(text, str):
        if text.count("[") + text.count("{") <= limit:  # the common case: too few openers to be deep
            return False
        data = text.encode("utf-8", "surrogatepass")
    else:
        if text.count(b"[") + text.count(b"{") <= limit:
            return False
        data = text
    brackets = _STRING.sub(b"", data).translate(_OPEN_CLOSE, _NOT_BRACKETS)
    if b"[" * (limit + 1) in brackets:  # the usual attack shape, told at once
        return True
    for _ in range(limit):  # each round removes the innermost pairs: the height drops by one
        if not brackets:
            return False
        shorter = brackets.replace(b"[]", b"")
        if len(shorter) == len(brackets):
            return False  # unbalanced brackets: not JSON, which the parser will say
        brackets = shorter
    return b"[]" in brackets


def _nodes(value: Any) -> Iterator[tuple[Any, int]]:
    """Every value inside `value` with its nesting depth (1: `value` itself), without recursion."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        yield item, depth
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list | tuple):
            stack.extend((child, depth + 1) for child in item)


def value_too_deep(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when dicts/lists/tuples in `value` nest deeper than `limit` (a cycle is endlessly deep)."""
    return any(depth > limit and isinstance(item, dict | list | tuple) for item, depth in _nodes(value))


def dumps_checked(value: Any, what: str = "payload") -> str:
    """`value` as compact standard JSON, or ValueError saying which rule `what` breaks."""
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except RecursionError:  # deeper than the encoder's recursion: surely over the limit
        raise ValueError(f"{what} is {TOO_DEEP}") from None
    except ValueError as exc:
        if "Out of range float" in str(exc):
            raise ValueError(f"{what} {NOT_FINITE}") from None
        raise ValueError(f"{what} is not JSON: {exc}") from None  # a circular reference
    if text_too_deep(text):
        raise ValueError(f"{what} is {TOO_DEEP}")
    return text


def refuse_constant(name: str) -> Any:
    """`parse_constant` for json.loads: NaN, Infinity and -Infinity are not standard JSON."""
    raise ValueError(f"{name} is not standard JSON: NaN and Infinity have no JSON form (send a number or null)")


def loads_checked(text: str | bytes, what: str = "payload") -> Any:
    """Parse JSON text by the rules: ValueError for a text nested too deep (told before parsing, which
    would overflow), NaN or Infinity, or one that is not JSON."""
    if text_too_deep(text):
        raise ValueError(f"{what} is {TOO_DEEP}")
    return json.loads(text, parse_constant=refuse_constant)


# -- reading back -----------------------------------------------------------------------------------

def unrenderable(why: str) -> dict[str, str]:
    """The marker shown in place of a stored value that cannot be shown as JSON."""
    return {"unrenderable": why}


def renderable(value: Any, limit: int = MAX_JSON_DEPTH) -> Any:
    """`value` as any JSON encoder writes it, or the marker saying why it cannot be shown.

    Bytes (Avro `bytes`/`fixed` fields) become text: UTF-8 when they are, else one character per
    byte (Avro's JSON encoding), since a JSON encoder refuses bytes that are not UTF-8.
    """
    has_bytes = False
    for item, depth in _nodes(value):
        if isinstance(item, float) and not math.isfinite(item):
            return unrenderable(NOT_FINITE)
        if isinstance(item, bytes):
            has_bytes = True
        elif depth > limit and isinstance(item, dict | list | tuple):
            return unrenderable(TOO_DEEP)
    return _bytes_as_text(value) if has_bytes else value


def _bytes_as_text(value: Any) -> Any:
    # Recursion is safe here: `renderable` has checked the depth.
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return value.decode("latin-1")
    if isinstance(value, dict):
        return {key: _bytes_as_text(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_bytes_as_text(item) for item in value]
    return value


def stored_json(text: str) -> Any:
    """A stored JSON text (a kept result) as a value to show: parsed, or the marker saying why not."""
    if text_too_deep(text):
        return unrenderable(TOO_DEEP)  # before parsing: a deep enough text overflows the parser
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:
        return unrenderable(f"not JSON: {exc}")
    return renderable(value)
