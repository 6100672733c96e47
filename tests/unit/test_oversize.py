"""Routed records near Kafka's size limit: error headers trimmed to fit, else a dead letter by reference."""

from __future__ import annotations

import pytest

from kqueue.core import names
from kqueue.core.oversize import (
    KEY_KEPT_UP_TO,
    dead_letter_topic_of,
    is_reference,
    record_bytes,
    trimmed,
)
from kqueue.core.records import OutRecord, RecordKind
from kqueue.core.status import TaskEvent
from kqueue.worker.routing import route_due, route_failure
from kqueue.worker.work import Failure
from tests.unit.test_routing import NOW, as_dict, make_item, make_task, task_headers, tier_item

LIMIT = 20_000
LONG_ERROR = Failure("ValueError", "é" * 800, "Traceback (most recent call last):\n" + "  frame\n" * 600)


def value_leaving(room: int) -> bytes:
    """A payload leaving `room` bytes under LIMIT for a retry's error message (measured, not guessed);
    negative: not even an empty message fits."""
    task = make_task(max_attempts=3)
    probe = route_failure(make_item(task_headers(), task=task, value=b""), Failure("E", ""), task.app.tiers, "",
                          NOW, limit=10**9)[0]
    return b"v" * (LIMIT - record_bytes(probe) - room)


def test_a_record_that_fits_is_left_alone_and_carries_a_fallback() -> None:
    task = make_task()
    [retry] = route_failure(make_item(task_headers(), task=task), LONG_ERROR, task.app.tiers, "", NOW, limit=LIMIT)
    assert retry.kind is RecordKind.RETRY
    assert as_dict(retry.headers)[names.H_ERROR_TRACE].endswith("  frame\n")  # nothing trimmed
    assert retry.fallback is not None


def test_the_trace_goes_first_then_the_message_is_cut_and_the_payload_is_untouched() -> None:
    task = make_task()
    value = value_leaving(room=1_000)  # room for part of the 1,600-byte message, not for the trace
    [retry] = route_failure(make_item(task_headers(), task=task, value=value), LONG_ERROR, task.app.tiers, "", NOW,
                            limit=LIMIT)
    headers = as_dict(retry.headers)
    assert retry.kind is RecordKind.RETRY and retry.value == value
    assert record_bytes(retry) <= LIMIT
    assert names.H_ERROR_TRACE not in headers
    message = headers[names.H_ERROR_MESSAGE]
    assert 0 < len(message) < 800 and set(message) == {"é"}  # cut on a character boundary
    assert headers[names.H_ERROR_TYPE] == "ValueError"


def test_a_retry_that_cannot_fit_becomes_a_dead_letter_by_reference_with_its_failed_event() -> None:
    task = make_task()
    item = make_item(task_headers(), task=task, value=value_leaving(room=-10), topic="emails.high", offset=99)
    letter, status = route_failure(item, LONG_ERROR, task.app.tiers, "", NOW, limit=LIMIT)
    headers = as_dict(letter.headers)
    assert (letter.kind, letter.topic, letter.partition, letter.value) == (RecordKind.DEAD_LETTER, "emails.dlq", 4,
                                                                           None)
    assert headers[names.H_PAYLOAD_AT] == "emails.high/4/99"
    assert headers[names.H_ERROR_TYPE] == "RecordTooLarge"
    assert "retry record" in headers[names.H_ERROR_MESSAGE] and "ValueError" in headers[names.H_ERROR_MESSAGE]
    assert headers[names.H_ID] == "task-1" and headers[names.H_TYPE] == "send"
    assert names.H_ERROR_TRACE not in headers and names.H_TARGET not in headers
    event = TaskEvent.decode(status.value or b"")
    assert (event.status, event.task_id, event.at_ms) == ("failed", "task-1", int(headers[names.H_FAILED_AT]))
    assert record_bytes(letter) < 2_000


def test_a_dead_letter_that_cannot_fit_keeps_its_error_and_its_event_agrees() -> None:
    task = make_task(max_attempts=1)
    value = value_leaving(room=-10) + b"v" * 300  # a dead letter carries fewer headers than a retry
    item = make_item(task_headers(attempt=1, max_attempts=1), task=task, value=value)
    letter, status = route_failure(item, LONG_ERROR, task.app.tiers, "", NOW, limit=LIMIT)
    headers = as_dict(letter.headers)
    assert letter.value is None and is_reference(letter)
    assert headers[names.H_ERROR_TYPE] == "ValueError"
    assert headers[names.H_FAILED_AT] == str(NOW)
    assert TaskEvent.decode(status.value or b"").at_ms == NOW


def test_the_fallback_of_a_fitting_retry_is_the_reference_and_its_event() -> None:
    task = make_task()
    [retry] = route_failure(make_item(task_headers(), task=task), LONG_ERROR, task.app.tiers, "", NOW, limit=LIMIT)
    assert retry.fallback is not None
    letter, status = retry.fallback(None)
    assert letter.kind is RecordKind.DEAD_LETTER and is_reference(letter)
    assert "refused by emails.delay" in as_dict(letter.headers)[names.H_ERROR_MESSAGE]
    assert status.kind is RecordKind.STATUS
    assert letter.fallback is None  # a reference has nothing smaller to become


def test_a_dead_letters_fallback_is_the_reference_alone() -> None:
    task = make_task(max_attempts=1)
    letter, _status = route_failure(make_item(task_headers(max_attempts=1), task=task), LONG_ERROR, task.app.tiers,
                                    "", NOW, limit=LIMIT)
    assert letter.fallback is not None
    [reference] = letter.fallback(None)
    assert reference.topic == "emails.dlq" and as_dict(reference.headers)[names.H_ERROR_TYPE] == "ValueError"


def test_a_due_tier_record_too_large_for_its_target_is_dead_lettered_by_reference() -> None:
    item = tier_item(NOW - 1)
    item.value = b"x" * LIMIT
    letter, status = route_due(item, make_task().app.tiers, "", NOW, limit=LIMIT)
    assert letter.topic == "emails.dlq" and as_dict(letter.headers)[names.H_PAYLOAD_AT] == item.origin
    assert status.kind is RecordKind.STATUS


def test_a_long_key_is_dropped_from_the_reference_a_short_one_kept() -> None:
    task = make_task(max_attempts=1)
    for key, kept in ((b"k" * KEY_KEPT_UP_TO, True), (b"k" * (KEY_KEPT_UP_TO + 1), False)):
        item = make_item(task_headers(max_attempts=1), task=task, key=key, value=b"v" * LIMIT)
        letter, _ = route_failure(item, LONG_ERROR, task.app.tiers, "", NOW, limit=LIMIT)
        assert (letter.key == key) is kept


@pytest.mark.parametrize(("topic", "dlq"), [("emails.delay.5s", "emails.dlq"), ("acme.emails.high", "acme.emails.dlq"),
                                            ("emails.dlq", "emails.dlq")])
def test_dead_letter_topic_of_keeps_the_prefix(topic: str, dlq: str) -> None:
    assert dead_letter_topic_of(topic) == dlq


def test_trimmed_gives_up_when_headers_alone_are_not_enough() -> None:
    record = OutRecord(RecordKind.RETRY, "q.delay.1s", b"v" * 500, None,
                       [(names.H_ERROR_MESSAGE, b"m" * 100), ("user", b"u" * 500)], 0)
    assert trimmed(record, 600) is None
    shorter = trimmed(record, record_bytes(record) - 40)
    assert shorter is not None and dict(shorter.headers)[names.H_ERROR_MESSAGE] == b"m" * 60
