"""Task metadata <-> Kafka headers."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from kqueue.core import names
from kqueue.core.headers import (
    TRACE_LIMIT,
    TaskMeta,
    dead_letter_headers,
    header_map,
    new_task_headers,
    now_ms,
    to_header_list,
)

# -- header_map -----------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [None, [], {}, ()])
def test_header_map_empty(raw: object) -> None:
    assert header_map(raw) == {}  # type: ignore[arg-type]


def test_header_map_list_of_bytes_str_and_none() -> None:
    raw = [("kq-id", b"abc"), ("kq-type", "send_email"), ("empty", b""), ("nothing", None)]
    assert header_map(raw) == {"kq-id": "abc", "kq-type": "send_email", "empty": ""}


def test_header_map_dict_input() -> None:
    raw = {"kq-id": b"abc", "kq-type": "t", "gone": None}
    assert header_map(raw) == {"kq-id": "abc", "kq-type": "t"}


def test_header_map_utf8_and_invalid_bytes() -> None:
    out = header_map([("a", "日本".encode()), ("b", b"\xff\xfeok")])
    assert out["a"] == "日本"
    assert out["b"].endswith("ok")
    assert "\ufffd" in out["b"]  # replaced, not raised


def test_header_map_repeated_header_last_wins() -> None:
    raw = [("kq-attempt", b"1"), ("x", b"keep"), ("kq-attempt", b"2"), ("kq-attempt", "3")]
    assert header_map(raw) == {"kq-attempt": "3", "x": "keep"}


def test_header_map_none_does_not_erase_earlier_value() -> None:
    assert header_map([("a", b"1"), ("a", None)]) == {"a": "1"}


def test_header_map_accepts_generators() -> None:
    assert header_map((f"h{i}", str(i).encode()) for i in range(3)) == {"h0": "0", "h1": "1", "h2": "2"}


def test_to_header_list_skips_none_and_stringifies() -> None:
    assert to_header_list({"a": "x", "b": 7, "c": None, "d": "é"}) == [
        ("a", b"x"), ("b", b"7"), ("d", "é".encode()),
    ]


# -- TaskMeta ---------------------------------------------------------------------------------------

def test_task_meta_defaults() -> None:
    meta = TaskMeta.from_headers({})
    assert meta == TaskMeta(
        task_id=None, task_type=None, attempt=1, max_attempts=None, enqueued_at=None, not_before=None,
        priority=None, idempotency_key=None, content_type=None, origin=None,
    )


def test_task_meta_all_fields() -> None:
    values = {
        names.H_ID: "id-1", names.H_TYPE: "send_email", names.H_ATTEMPT: "3", names.H_MAX_ATTEMPTS: "5",
        names.H_ENQUEUED_AT: "1700000000000", names.H_NOT_BEFORE: "1700000005000", names.H_PRIORITY: "high",
        names.H_IDEMPOTENCY_KEY: "idem", names.H_CONTENT_TYPE: "avro", names.H_ORIGIN: "email/3/42",
    }
    meta = TaskMeta.from_headers(values)
    assert meta.task_id == "id-1"
    assert meta.task_type == "send_email"
    assert meta.attempt == 3
    assert meta.max_attempts == 5
    assert meta.enqueued_at == 1_700_000_000_000
    assert meta.not_before == 1_700_000_005_000
    assert meta.priority == "high"
    assert meta.idempotency_key == "idem"
    assert meta.content_type == "avro"
    assert meta.origin == "email/3/42"


@pytest.mark.parametrize("bad", ["", "abc", "1.5", "0x10", "NaN", "1e3"])
def test_task_meta_bad_ints_fall_back_to_defaults(bad: str) -> None:
    meta = TaskMeta.from_headers({
        names.H_ATTEMPT: bad, names.H_MAX_ATTEMPTS: bad, names.H_ENQUEUED_AT: bad, names.H_NOT_BEFORE: bad,
    })
    assert meta.attempt == 1
    assert meta.max_attempts is None
    assert meta.enqueued_at is None
    assert meta.not_before is None


@pytest.mark.parametrize(("text", "attempt"), [("0", 1), ("-4", 1), ("1", 1), ("2", 2), ("17", 17)])
def test_task_meta_attempt_is_at_least_one(text: str, attempt: int) -> None:
    assert TaskMeta.from_headers({names.H_ATTEMPT: text}).attempt == attempt


def test_task_meta_zero_means_unset() -> None:
    meta = TaskMeta.from_headers({names.H_MAX_ATTEMPTS: "0", names.H_ENQUEUED_AT: "0", names.H_NOT_BEFORE: "0"})
    assert (meta.max_attempts, meta.enqueued_at, meta.not_before) == (None, None, None)


def test_task_meta_is_frozen() -> None:
    meta = TaskMeta.from_headers({})
    with pytest.raises(AttributeError):
        meta.attempt = 2  # type: ignore[misc]


# -- new_task_headers -------------------------------------------------------------------------------

def test_new_task_headers_contents() -> None:
    headers = new_task_headers("id-1", "send_email", "avro", 5, priority="high", idempotency_key="k1",
                               enqueued_at=1234)
    assert all(isinstance(k, str) and isinstance(v, bytes) for k, v in headers)
    assert dict(headers) == {
        names.H_ID: b"id-1",
        names.H_TYPE: b"send_email",
        names.H_ATTEMPT: b"1",
        names.H_MAX_ATTEMPTS: b"5",
        names.H_ENQUEUED_AT: b"1234",
        names.H_CONTENT_TYPE: b"avro",
        names.H_PRIORITY: b"high",
        names.H_IDEMPOTENCY_KEY: b"k1",
    }
    assert len(headers) == 8  # no duplicates
    meta = TaskMeta.from_headers(header_map(headers))
    assert (meta.task_id, meta.task_type, meta.attempt, meta.max_attempts) == ("id-1", "send_email", 1, 5)
    assert (meta.enqueued_at, meta.priority, meta.idempotency_key, meta.content_type) == (1234, "high", "k1", "avro")


def test_new_task_headers_defaults() -> None:
    before = now_ms()
    headers = new_task_headers("id-2", "t", "json", 3)
    after = now_ms()
    values = header_map(headers)
    assert names.H_IDEMPOTENCY_KEY not in values
    assert values[names.H_PRIORITY] == "normal"
    assert before <= int(values[names.H_ENQUEUED_AT]) <= after
    assert abs(int(values[names.H_ENQUEUED_AT]) - time.time() * 1000) < 60_000


def test_new_task_headers_extra_appended() -> None:
    headers = new_task_headers("id", "t", "json", 1, enqueued_at=1,
                               extra={names.H_TRACEPARENT: "00-abc-def-01", "x-tenant": "ключ"})
    assert headers[-2:] == [(names.H_TRACEPARENT, b"00-abc-def-01"), ("x-tenant", "ключ".encode())]
    assert Counter(k for k, _ in headers)[names.H_ID] == 1


# -- dead_letter_headers ----------------------------------------------------------------------------

ORIGINAL = {
    names.H_ID: "old-id", names.H_TYPE: "send_email", names.H_ATTEMPT: "5", "x-custom": "v",
    names.H_TRACEPARENT: "00-trace-01",
}


def test_dead_letter_headers_keeps_original_and_adds_error() -> None:
    headers = dead_letter_headers(ORIGINAL, "task-1", "email/2/99", "ValueError", "boom", "Traceback...", 4242)
    values = dict(headers)
    assert len(values) == len(headers)  # each header once
    assert values[names.H_TYPE] == b"send_email"
    assert values[names.H_ATTEMPT] == b"5"
    assert values["x-custom"] == b"v"
    assert values[names.H_TRACEPARENT] == b"00-trace-01"
    assert values[names.H_ID] == b"task-1"
    assert values[names.H_ORIGIN] == b"email/2/99"
    assert values[names.H_ERROR_TYPE] == b"ValueError"
    assert values[names.H_ERROR_MESSAGE] == b"boom"
    assert values[names.H_ERROR_TRACE] == b"Traceback..."
    assert values[names.H_FAILED_AT] == b"4242"
    assert ORIGINAL[names.H_ID] == "old-id"  # the input mapping is not modified


def test_dead_letter_headers_keeps_existing_origin() -> None:
    original = {**ORIGINAL, names.H_ORIGIN: "email/0/1"}
    values = header_map(dead_letter_headers(original, "t", "email.dlq/0/7", "E", "m", failed_at=1))
    assert values[names.H_ORIGIN] == "email/0/1"


def test_dead_letter_headers_replaces_previous_error() -> None:
    original = {**ORIGINAL, names.H_ERROR_TYPE: "Old", names.H_ERROR_MESSAGE: "old",
                names.H_ERROR_TRACE: "old trace", names.H_FAILED_AT: "1"}
    values = header_map(dead_letter_headers(original, "t", "o", "New", "new", "", 2))
    assert values[names.H_ERROR_TYPE] == "New"
    assert values[names.H_ERROR_MESSAGE] == "new"
    assert values[names.H_FAILED_AT] == "2"
    assert names.H_ERROR_TRACE not in values  # no trace now: the stale one is not carried over


def test_dead_letter_headers_default_failed_at() -> None:
    before = now_ms()
    values = header_map(dead_letter_headers({}, "t", "o", "E", "m"))
    assert before <= int(values[names.H_FAILED_AT]) <= now_ms()
    assert names.H_ERROR_TRACE not in values


def test_dead_letter_message_capped() -> None:
    message = "m" * 999 + "ABCDEF"
    values = header_map(dead_letter_headers({}, "t", "o", "E", message, failed_at=1))
    assert values[names.H_ERROR_MESSAGE] == "m" * 999 + "A"
    assert len(values[names.H_ERROR_MESSAGE]) == 1000
    short = header_map(dead_letter_headers({}, "t", "o", "E", "short", failed_at=1))
    assert short[names.H_ERROR_MESSAGE] == "short"


def test_dead_letter_trace_keeps_the_end() -> None:
    trace = "HEAD" + "x" * (TRACE_LIMIT * 2) + "ValueError: the real cause"
    values = header_map(dead_letter_headers({}, "t", "o", "E", "m", trace, 1))
    kept = values[names.H_ERROR_TRACE]
    assert len(kept) == TRACE_LIMIT
    assert kept.endswith("ValueError: the real cause")
    assert "HEAD" not in kept
    exact = "y" * TRACE_LIMIT
    assert header_map(dead_letter_headers({}, "t", "o", "E", "m", exact, 1))[names.H_ERROR_TRACE] == exact


def test_dead_letter_trace_limit_holds_in_bytes() -> None:
    # TRACE_LIMIT is documented as "bytes of traceback kept in kq-error-trace" (headers travel with
    # every fetch). A traceback with non-ASCII text (an exception message in Japanese) must not
    # exceed it on the wire.
    trace = "Traceback (most recent call last):\n" + "エラー" * TRACE_LIMIT
    headers = dict(dead_letter_headers({}, "t", "o", "E", "m", trace, 1))
    assert len(headers[names.H_ERROR_TRACE]) <= TRACE_LIMIT


def test_quick_fields_and_enqueued_at_agree_with_the_full_parse() -> None:
    from kqueue.core.headers import TaskMeta, enqueued_at_ms, header_map, quick_fields

    raw = [("kq-id", b"t-9"), ("kq-enqueued-at", b"1700000000000"), ("kq-type", b"x"), ("kq-attempt", b"4"),
           ("kq-attempt", b"5")]  # repeated: the last wins, as in header_map
    meta = TaskMeta.from_headers(header_map(raw))
    for given in (raw, dict(raw), {k: v.decode() for k, v in raw}):
        assert quick_fields(given) == (meta.task_id, meta.attempt, meta.enqueued_at) == ("t-9", 5, 1700000000000)
        assert enqueued_at_ms(given) == 1700000000000
    assert quick_fields([("kq-attempt", b"zero"), ("kq-enqueued-at", b"")]) == (None, 1, None)
    assert enqueued_at_ms(None) is None
    assert enqueued_at_ms([("kq-enqueued-at", b"x")]) is None
