"""Where a failed task or a due tier record goes next (route_failure, route_due) and the headers it carries."""

from __future__ import annotations

import random
import time
from collections import Counter
from datetime import timedelta

import pytest

import kqueue
from kqueue.core import names
from kqueue.core.errors import Reject, Retry
from kqueue.core.headers import HeaderList, delivered_headers, replay_headers, retry_headers
from kqueue.core.ids import derived_task_id
from kqueue.core.records import SETTLEMENT_OF_KIND, RecordKind, Settlement
from kqueue.core.retry import RetryPolicy, Tiers
from kqueue.core.status import TaskEvent
from kqueue.sdk.task import TaskDef
from kqueue.worker.routing import RESULT_LIMIT, OutRecord, result_records, route_due, route_failure
from kqueue.worker.work import Failure, WorkItem

NOW = 1_700_000_000_000
QUEUE = "emails"


def fail(item: WorkItem, failure: Failure, tiers: Tiers, prefix: str, now: int,
         rng: random.Random | None = None) -> OutRecord:
    """route_failure's retry or dead letter (the first record it returns; a dead letter's status event follows)."""
    records = route_failure(item, failure, tiers, prefix, now, rng)
    assert isinstance(records, list)
    assert all(isinstance(r, OutRecord) for r in records)
    assert len(records) == (1 if records[0].kind == "retry" else 2)
    return records[0]


def make_app(**kwargs: object) -> kqueue.App:
    return kqueue.App("t", "localhost:1", **kwargs)  # type: ignore[arg-type]


def make_task(app: kqueue.App | None = None, *, max_attempts: int = 3, backoff: RetryPolicy | None = None,
              queue: str = QUEUE) -> TaskDef:
    app = app or make_app()

    @app.task(queue=queue, max_attempts=max_attempts, backoff=backoff)
    def send(payload: object) -> None:
        return None

    return send


def make_item(headers: dict[str, bytes], *, task: TaskDef | None = None, topic: str = QUEUE, partition: int = 4,
              offset: int = 17, key: bytes | None = b"user-1", value: bytes | None = b'{"to": "a@b.c"}',
              queue: str = QUEUE) -> WorkItem:
    return WorkItem(topic, partition, offset, key, value, headers, queue, task=task)


def task_headers(attempt: int = 1, max_attempts: int | None = 3, **extra: bytes) -> dict[str, bytes]:
    out = {
        names.H_ID: b"task-1",
        names.H_TYPE: b"send",
        names.H_ATTEMPT: str(attempt).encode(),
        names.H_ENQUEUED_AT: str(NOW - 60_000).encode(),
        names.H_CONTENT_TYPE: b"json",
        names.H_PRIORITY: b"normal",
        names.H_TRACEPARENT: b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    }
    if max_attempts is not None:
        out[names.H_MAX_ATTEMPTS] = str(max_attempts).encode()
    out.update({k.replace("_", "-"): v for k, v in extra.items()})
    return out


def as_dict(headers: HeaderList) -> dict[str, str]:
    """Decode the produced headers, checking each name appears once and every value is bytes."""
    counts = Counter(name for name, _ in headers)
    assert all(c == 1 for c in counts.values()), counts
    assert all(isinstance(v, bytes) for _, v in headers)
    return {name: value.decode() for name, value in headers}


FIXED_40S = RetryPolicy(base=40.0, jitter=0.0)
ERROR = Failure("ValueError", "boom", "Traceback (most recent call last):\n  ...\nValueError: boom\n")


# -- route_failure: retries -----------------------------------------------------------------------


def test_first_failure_goes_to_the_delay_tier_of_its_backoff() -> None:
    task = make_task(backoff=FIXED_40S)
    item = make_item(task_headers(attempt=1), task=task)

    out = fail(item, ERROR, task.app.tiers, "", NOW)

    assert out.kind == "retry"
    assert out.topic == "emails.delay.30s"
    assert (out.key, out.value, out.partition) == (b"user-1", b'{"to": "a@b.c"}', 4)
    h = as_dict(out.headers)
    assert h[names.H_ATTEMPT] == "2"
    assert h[names.H_MAX_ATTEMPTS] == "3"
    assert h[names.H_NOT_BEFORE] == str(NOW + 40_000)
    assert h[names.H_TARGET] == "emails"
    assert h[names.H_ERROR_TYPE] == "ValueError"
    assert h[names.H_ERROR_MESSAGE] == "boom"
    assert h[names.H_ERROR_TRACE].endswith("ValueError: boom\n")
    assert h[names.H_FAILED_AT] == str(NOW)
    assert h[names.H_ORIGIN] == "emails/4/17"
    assert h[names.H_ID] == "task-1"
    # everything else travels unchanged
    for name in (names.H_TYPE, names.H_ENQUEUED_AT, names.H_CONTENT_TYPE, names.H_PRIORITY, names.H_TRACEPARENT):
        assert h[name] == item.headers[name]


def test_a_retry_is_one_record_and_no_status_event() -> None:
    task = make_task(backoff=FIXED_40S)
    records = route_failure(make_item(task_headers(), task=task), ERROR, task.app.tiers, "", NOW)
    assert [r.kind for r in records] == ["retry"]


def test_retry_from_a_priority_lane_targets_that_lane() -> None:
    task = make_task(backoff=FIXED_40S)
    item = make_item(task_headers(kq_priority=b"high"), task=task, topic="emails.high")

    out = fail(item, ERROR, task.app.tiers, "", NOW)

    assert out.topic == "emails.delay.30s"  # tiers are per queue, not per lane
    h = as_dict(out.headers)
    assert h[names.H_TARGET] == "emails.high"
    assert h[names.H_ORIGIN] == "emails.high/4/17"


def test_retry_keeps_an_existing_origin() -> None:
    task = make_task(backoff=FIXED_40S)
    item = make_item(task_headers(attempt=2, kq_origin=b"emails/1/3"), task=task, offset=99)
    h = as_dict(fail(item, ERROR, task.app.tiers, "", NOW).headers)
    assert h[names.H_ORIGIN] == "emails/1/3"
    assert h[names.H_ATTEMPT] == "3"


def test_retry_keeps_null_key_and_null_value() -> None:
    task = make_task(backoff=FIXED_40S)
    out = fail(make_item(task_headers(), task=task, key=None, value=None), ERROR, task.app.tiers, "", NOW)
    assert out.kind == "retry"
    assert out.key is None
    assert out.value is None


def test_retry_with_default_policy_waits_one_second_plus_jitter() -> None:
    task = make_task()  # no backoff: the app's default policy (1 s doubling, +20% at most)
    for seed in range(20):
        out = fail(make_item(task_headers(), task=task), ERROR, task.app.tiers, "", NOW,
                            rng=random.Random(seed))
        h = as_dict(out.headers)
        assert out.topic == "emails.delay.1s"
        assert NOW + 1_000 <= int(h[names.H_NOT_BEFORE]) <= NOW + 1_200


def test_retry_backoff_grows_with_the_attempt() -> None:
    task = make_task(max_attempts=10, backoff=RetryPolicy(jitter=0.0))
    expected = {1: (1_000, "1s"), 3: (4_000, "1s"), 4: (8_000, "5s"), 6: (32_000, "30s"), 8: (128_000, "2m")}
    for attempt, (wait_ms, tier) in expected.items():
        out = fail(make_item(task_headers(attempt, 10), task=task), ERROR, task.app.tiers, "", NOW)
        h = as_dict(out.headers)
        assert out.topic == f"emails.delay.{tier}"
        assert h[names.H_NOT_BEFORE] == str(NOW + wait_ms)
        assert h[names.H_ATTEMPT] == str(attempt + 1)


def test_retry_uses_the_app_policy_when_the_task_has_none() -> None:
    app = make_app(retry_policy=RetryPolicy(base=300.0, jitter=0.0))
    task = make_task(app)
    out = fail(make_item(task_headers(), task=task), ERROR, app.tiers, "", NOW)
    assert out.topic == "emails.delay.2m"
    assert as_dict(out.headers)[names.H_NOT_BEFORE] == str(NOW + 300_000)


def test_task_backoff_overrides_the_app_policy() -> None:
    app = make_app(retry_policy=RetryPolicy(base=300.0, jitter=0.0))
    task = make_task(app, backoff=FIXED_40S)
    out = fail(make_item(task_headers(), task=task), ERROR, app.tiers, "", NOW)
    assert out.topic == "emails.delay.30s"


def test_retry_uses_the_app_delay_tiers() -> None:
    app = make_app(delay_tiers=("15s", "1m"))
    task = make_task(app, backoff=FIXED_40S)
    out = fail(make_item(task_headers(), task=task), ERROR, app.tiers, "", NOW)
    assert out.topic == "emails.delay.15s"


@pytest.mark.parametrize(
    ("delay", "tier", "wait_ms"),
    [(600.0, "10m", 600_000), (7.0, "5s", 7_000), (0.3, "1s", 300), (90_000.0, "6h", 90_000_000)],
)
def test_requested_delay_picks_the_tier_for_that_delay(delay: float, tier: str, wait_ms: int) -> None:
    task = make_task(backoff=FIXED_40S)
    failure = Failure("Retry", "later", requested_delay=delay)
    out = fail(make_item(task_headers(), task=task), failure, task.app.tiers, "", NOW)
    assert out.kind == "retry"
    assert out.topic == f"emails.delay.{tier}"
    assert as_dict(out.headers)[names.H_NOT_BEFORE] == str(NOW + wait_ms)


def test_retry_exception_with_timedelta_delay() -> None:
    task = make_task(backoff=FIXED_40S)
    failure = Failure.from_exception(Retry(delay=timedelta(minutes=3), reason="rate limited"))
    out = fail(make_item(task_headers(), task=task), failure, task.app.tiers, "", NOW)
    h = as_dict(out.headers)
    assert out.topic == "emails.delay.2m"
    assert h[names.H_NOT_BEFORE] == str(NOW + 180_000)
    assert h[names.H_ERROR_TYPE] == "Retry"
    assert h[names.H_ERROR_MESSAGE] == "rate limited"


def test_topic_prefix_applies_to_the_tier_and_the_target() -> None:
    app = make_app(topic_prefix="acme.")
    task = make_task(app, backoff=FIXED_40S)
    item = make_item(task_headers(), task=task, topic="acme.emails")
    out = fail(item, ERROR, app.tiers, "acme.", NOW)
    assert out.topic == "acme.emails.delay.30s"
    h = as_dict(out.headers)
    assert h[names.H_TARGET] == "acme.emails"
    assert h[names.H_ORIGIN] == "acme.emails/4/17"


def test_max_attempts_header_overrides_the_task_upwards() -> None:
    task = make_task(max_attempts=3, backoff=FIXED_40S)
    out = fail(make_item(task_headers(attempt=3, max_attempts=5), task=task), ERROR, task.app.tiers, "",
                        NOW)
    assert out.kind == "retry"
    h = as_dict(out.headers)
    assert h[names.H_ATTEMPT] == "4"
    assert h[names.H_MAX_ATTEMPTS] == "5"


def test_max_attempts_header_overrides_the_task_downwards() -> None:
    task = make_task(max_attempts=10, backoff=FIXED_40S)
    out = fail(make_item(task_headers(attempt=2, max_attempts=2), task=task), ERROR, task.app.tiers, "",
                        NOW)
    assert out.kind == "dead-letter"
    assert out.topic == "emails.dlq"


def test_missing_attempt_headers_mean_first_attempt_of_the_tasks_maximum() -> None:
    task = make_task(max_attempts=4, backoff=FIXED_40S)
    out = fail(make_item({}, task=task), ERROR, task.app.tiers, "", NOW)
    h = as_dict(out.headers)
    assert out.kind == "retry"
    assert h[names.H_ATTEMPT] == "2"
    assert h[names.H_MAX_ATTEMPTS] == "4"
    # a record from a foreign producer gets a stable id derived from where it was first seen
    assert h[names.H_ID] == derived_task_id("emails", 4, 17)


def test_retry_replaces_the_previous_error_and_drops_a_stale_trace() -> None:
    task = make_task(backoff=FIXED_40S)
    old = task_headers(attempt=2, kq_error_type=b"OldError", kq_error_message=b"old", kq_error_trace=b"old trace",
                       kq_failed_at=b"1")
    failure = Failure("KeyError", "new")  # no trace this time
    h = as_dict(fail(make_item(old, task=task), failure, task.app.tiers, "", NOW).headers)
    assert h[names.H_ERROR_TYPE] == "KeyError"
    assert h[names.H_ERROR_MESSAGE] == "new"
    assert names.H_ERROR_TRACE not in h
    assert h[names.H_FAILED_AT] == str(NOW)


# -- route_failure: dead letters ------------------------------------------------------------------


def test_last_attempt_goes_to_the_dlq() -> None:
    task = make_task(max_attempts=3, backoff=FIXED_40S)
    item = make_item(task_headers(attempt=3, kq_origin=b"emails/4/2"), task=task)

    out = fail(item, ERROR, task.app.tiers, "", NOW)

    assert out.kind == "dead-letter"
    assert out.topic == "emails.dlq"
    assert (out.key, out.value, out.partition) == (b"user-1", b'{"to": "a@b.c"}', 4)
    h = as_dict(out.headers)
    assert h[names.H_ATTEMPT] == "3"
    assert h[names.H_ERROR_TYPE] == "ValueError"
    assert h[names.H_ERROR_MESSAGE] == "boom"
    assert h[names.H_FAILED_AT] == str(NOW)
    assert h[names.H_ORIGIN] == "emails/4/2"
    assert h[names.H_ID] == "task-1"
    assert names.H_NOT_BEFORE not in h
    assert names.H_TARGET not in h


def test_dead_letter_from_a_lane_goes_to_the_queue_dlq() -> None:
    task = make_task(max_attempts=1)
    out = fail(make_item(task_headers(1, 1), task=task, topic="emails.low"), ERROR, task.app.tiers, "", NOW)
    assert out.topic == "emails.dlq"
    assert as_dict(out.headers)[names.H_ORIGIN] == "emails.low/4/17"


def test_reject_dead_letters_on_the_first_attempt() -> None:
    task = make_task(max_attempts=5, backoff=FIXED_40S)
    failure = Failure("Reject", "bad input", reject=True)
    out = fail(make_item(task_headers(1, 5), task=task), failure, task.app.tiers, "", NOW)
    assert out.kind == "dead-letter"
    assert out.topic == "emails.dlq"
    assert as_dict(out.headers)[names.H_ERROR_MESSAGE] == "bad input"


def test_reject_exception_dead_letters() -> None:
    task = make_task(max_attempts=5, backoff=FIXED_40S)
    failure = Failure.from_exception(Reject("never valid"))
    out = fail(make_item(task_headers(1, 5), task=task), failure, task.app.tiers, "", NOW)
    assert out.kind == "dead-letter"
    assert as_dict(out.headers)[names.H_ERROR_TYPE] == "Reject"


def test_unrunnable_record_dead_letters_with_attempts_left() -> None:
    task = make_task(max_attempts=5, backoff=FIXED_40S)
    failure = Failure.unrunnable("DecodeError", "not JSON")
    out = fail(make_item(task_headers(1, 5), task=task), failure, task.app.tiers, "", NOW)
    assert out.kind == "dead-letter"
    assert out.topic == "emails.dlq"
    h = as_dict(out.headers)
    assert h[names.H_ERROR_TYPE] == "DecodeError"
    assert h[names.H_ERROR_MESSAGE] == "not JSON"
    assert names.H_ERROR_TRACE not in h


def test_record_without_a_task_dead_letters() -> None:
    app = make_app()
    item = make_item(task_headers(1, 5, kq_type=b"unknown"), task=None)
    out = fail(item, Failure("UnknownTaskType", "no handler for 'unknown'"), app.tiers, "", NOW)
    assert out.kind == "dead-letter"
    assert out.topic == "emails.dlq"
    assert out.partition == 4
    assert as_dict(out.headers)[names.H_ERROR_TYPE] == "UnknownTaskType"


def test_dead_letter_comes_with_a_failed_status_event() -> None:
    task = make_task(max_attempts=3, backoff=FIXED_40S)
    item = make_item(task_headers(attempt=3), task=task)

    letter, status = route_failure(item, ERROR, task.app.tiers, "", NOW)

    assert letter.kind == "dead-letter"
    assert status.kind == "status"
    assert status.topic == "_kqueue.status"
    assert status.key == b"task-1"
    assert status.partition is None  # by key, so the compacted topic keeps one state per task
    assert status.value is not None
    event = TaskEvent.decode(status.value)
    assert event == TaskEvent("task-1", "emails", "send", "failed", 3, NOW, "ValueError: boom")
    # the event and the dead letter carry the same time (how `dlq replay` matches them up)
    assert str(event.at_ms) == as_dict(letter.headers)[names.H_FAILED_AT]


def test_status_event_of_a_foreign_record_uses_its_derived_id_and_the_prefix() -> None:
    app = make_app(topic_prefix="acme.")
    item = make_item({}, task=None, topic="acme.emails", partition=1, offset=9)
    letter, status = route_failure(item, Failure.unrunnable("DecodeError", "x" * 2000), app.tiers, "acme.", NOW)
    task_id = derived_task_id("acme.emails", 1, 9)
    assert as_dict(letter.headers)[names.H_ID] == task_id
    assert status.topic == "acme._kqueue.status"
    assert status.key == task_id.encode()
    assert status.value is not None
    event = TaskEvent.decode(status.value)
    assert (event.task_id, event.queue, event.task_type, event.status, event.attempt) == (
        task_id, "emails", "", "failed", 1)
    assert event.error is not None
    assert event.error.startswith("DecodeError: xxx")
    assert len(event.error) == 1000


def test_dead_letter_applies_the_prefix() -> None:
    app = make_app(topic_prefix="acme.")
    task = make_task(app, max_attempts=1)
    out = fail(make_item(task_headers(1, 1), task=task, topic="acme.emails"), ERROR, app.tiers, "acme.",
                        NOW)
    assert out.topic == "acme.emails.dlq"


# -- route_due ------------------------------------------------------------------------------------


def tier_item(not_before: int | None, target: bytes | None = b"emails.high", *, topic: str = "emails.delay.30s",
              **extra: bytes) -> WorkItem:
    headers = task_headers(attempt=2, kq_error_type=b"ValueError", kq_origin=b"emails.high/0/5", **extra)
    if not_before is not None:
        headers[names.H_NOT_BEFORE] = str(not_before).encode()
    if target is not None:
        headers[names.H_TARGET] = target
    return make_item(headers, topic=topic, partition=2, offset=800)


@pytest.mark.parametrize("not_before", [NOW - 5_000, NOW - 1, NOW])
def test_due_record_is_delivered_to_its_target(not_before: int) -> None:
    item = tier_item(not_before)
    [out] = route_due(item, make_app().tiers, "", NOW)
    assert out.kind == "deliver"
    assert out.topic == "emails.high"
    assert (out.key, out.value, out.partition) == (b"user-1", b'{"to": "a@b.c"}', 2)
    h = as_dict(out.headers)
    assert names.H_NOT_BEFORE not in h
    assert names.H_TARGET not in h
    expected = {k: v for k, v in item.headers.items() if k not in (names.H_NOT_BEFORE, names.H_TARGET)}
    assert h == expected
    assert h[names.H_ATTEMPT] == "2"
    assert h[names.H_ORIGIN] == "emails.high/0/5"


def test_record_without_not_before_is_delivered() -> None:
    [out] = route_due(tier_item(None), make_app().tiers, "", NOW)
    assert out.kind == "deliver"
    assert out.topic == "emails.high"


def test_not_yet_due_record_is_re_tiered_for_the_remaining_time() -> None:
    item = tier_item(NOW + 40_000, topic="emails.delay.1h")
    [out] = route_due(item, make_app().tiers, "", NOW)
    assert out.kind == "re-tier"
    assert out.topic == "emails.delay.30s"
    assert (out.key, out.value, out.partition) == (b"user-1", b'{"to": "a@b.c"}', 2)
    h = as_dict(out.headers)
    assert h == item.headers  # still carries kq-not-before and kq-target for the next hop
    assert h[names.H_NOT_BEFORE] == str(NOW + 40_000)
    assert h[names.H_TARGET] == "emails.high"


@pytest.mark.parametrize(("ahead_ms", "tier"), [(1, "1s"), (700, "1s"), (5_000, "5s"), (10 * 3_600_000, "6h")])
def test_re_tier_picks_the_tier_that_fits(ahead_ms: int, tier: str) -> None:
    [out] = route_due(tier_item(NOW + ahead_ms), make_app().tiers, "", NOW)
    assert out.kind == "re-tier"
    assert out.topic == f"emails.delay.{tier}"


def test_missing_target_delivers_to_the_main_topic() -> None:
    [out] = route_due(tier_item(NOW - 1, target=None), make_app().tiers, "", NOW)
    assert out.kind == "deliver"
    assert out.topic == "emails"


def test_missing_target_with_prefix_delivers_to_the_prefixed_main_topic() -> None:
    item = tier_item(NOW - 1, target=None, topic="acme.emails.delay.5s")
    [out] = route_due(item, make_app().tiers, "acme.", NOW)
    assert out.topic == "acme.emails"


def test_re_tier_applies_the_prefix() -> None:
    item = tier_item(NOW + 40_000, target=b"acme.emails", topic="acme.emails.delay.1m")
    [out] = route_due(item, make_app().tiers, "acme.", NOW)
    assert out.topic == "acme.emails.delay.30s"


def test_retry_round_trip_keeps_id_origin_and_key() -> None:
    """Fail -> delay tier -> (re-tier) -> deliver -> fail on the last attempt -> DLQ."""
    task = make_task(max_attempts=2, backoff=FIXED_40S)
    tiers = task.app.tiers
    first = make_item({names.H_TYPE: b"send"}, task=task, topic="emails.high", partition=3, offset=10)

    retry = fail(first, ERROR, tiers, "", NOW)
    assert retry.topic == "emails.delay.30s"

    # 30 s later the tier record is due but 10 s remain: it moves to the 5 s tier
    in_tier = WorkItem(retry.topic, retry.partition, 500, retry.key, retry.value, retry.headers, QUEUE)
    [again] = route_due(in_tier, tiers, "", NOW + 30_000)
    assert (again.kind, again.topic) == ("re-tier", "emails.delay.5s")

    # 5 s tier twice: first 5 s remain (re-tier into 5s), then it is due
    in_5s = WorkItem(again.topic, again.partition, 70, again.key, again.value, again.headers, QUEUE)
    assert route_due(in_5s, tiers, "", NOW + 35_000)[0].topic == "emails.delay.5s"
    [delivered] = route_due(in_5s, tiers, "", NOW + 40_000)
    assert (delivered.kind, delivered.topic, delivered.partition) == ("deliver", "emails.high", 3)

    second = WorkItem(delivered.topic, delivered.partition, 42, delivered.key, delivered.value, delivered.headers,
                      QUEUE, task=task)
    assert second.meta.attempt == 2
    dead = fail(second, ERROR, tiers, "", NOW + 41_000)
    assert dead.topic == "emails.dlq"
    h = as_dict(dead.headers)
    assert h[names.H_ID] == derived_task_id("emails.high", 3, 10)
    assert h[names.H_ORIGIN] == "emails.high/3/10"
    assert h[names.H_ATTEMPT] == "2"
    assert h[names.H_TYPE] == "send"
    assert dead.key == first.key
    assert dead.partition == 3


# -- retry_headers / delivered_headers / replay_headers -------------------------------------------


ORIGINAL = {
    names.H_ID: "task-9",
    names.H_TYPE: "send",
    names.H_ATTEMPT: "1",
    names.H_MAX_ATTEMPTS: "3",
    names.H_ENQUEUED_AT: "1690000000000",
    names.H_PRIORITY: "high",
    names.H_TRACEPARENT: "00-abc-def-01",
    "x-custom": "kept",
}


def test_retry_headers_contents() -> None:
    h = as_dict(retry_headers(ORIGINAL, "task-9", "emails.high/1/2", 2, 3, NOW + 5_000, "emails.high", "IOError",
                              "disk full", "trace", NOW))
    assert h == {
        **ORIGINAL,
        names.H_ATTEMPT: "2",
        names.H_MAX_ATTEMPTS: "3",
        names.H_NOT_BEFORE: str(NOW + 5_000),
        names.H_TARGET: "emails.high",
        names.H_ERROR_TYPE: "IOError",
        names.H_ERROR_MESSAGE: "disk full",
        names.H_ERROR_TRACE: "trace",
        names.H_FAILED_AT: str(NOW),
        names.H_ORIGIN: "emails.high/1/2",
    }


def test_retry_headers_keep_an_existing_origin_and_set_the_id() -> None:
    original = {**ORIGINAL, names.H_ORIGIN: "emails/0/1"}
    original.pop(names.H_ID)
    h = as_dict(retry_headers(original, "derived-id", "emails/5/6", 3, 5, NOW, "emails", "E", "m", "", NOW))
    assert h[names.H_ORIGIN] == "emails/0/1"
    assert h[names.H_ID] == "derived-id"
    assert names.H_ERROR_TRACE not in h


def test_retry_headers_overwrite_previous_scheduling() -> None:
    original = {**ORIGINAL, names.H_NOT_BEFORE: "1", names.H_TARGET: "old", names.H_ATTEMPT: "4"}
    h = as_dict(retry_headers(original, "task-9", "o/0/0", 5, 6, NOW + 1, "emails", "E", "m", failed_at=NOW))
    assert (h[names.H_NOT_BEFORE], h[names.H_TARGET], h[names.H_ATTEMPT]) == (str(NOW + 1), "emails", "5")


def test_retry_headers_cap_the_message_and_default_failed_at_to_now() -> None:
    before = int(time.time() * 1000)
    h = as_dict(retry_headers(ORIGINAL, "task-9", "o/0/0", 2, 3, NOW, "emails", "E", "x" * 5000))
    after = int(time.time() * 1000)
    assert h[names.H_ERROR_MESSAGE] == "x" * 1000
    assert before <= int(h[names.H_FAILED_AT]) <= after


def test_retry_headers_do_not_modify_the_original() -> None:
    original = dict(ORIGINAL)
    retry_headers(original, "task-9", "o/0/0", 2, 3, NOW, "emails", "E", "m", "t", NOW)
    assert original == ORIGINAL


def test_delivered_headers_drop_only_the_scheduling_headers() -> None:
    original = {**ORIGINAL, names.H_NOT_BEFORE: str(NOW), names.H_TARGET: "emails.high", names.H_ERROR_TYPE: "E"}
    h = as_dict(delivered_headers(original))
    assert h == {**ORIGINAL, names.H_ERROR_TYPE: "E"}
    assert names.H_NOT_BEFORE in original  # not mutated


def test_delivered_headers_of_empty_is_empty() -> None:
    assert delivered_headers({}) == []


def test_replay_headers_reset_the_attempt_and_drop_errors_and_scheduling() -> None:
    dead = {
        **ORIGINAL,
        names.H_ATTEMPT: "3",
        names.H_ORIGIN: "emails.high/1/2",
        names.H_ERROR_TYPE: "IOError",
        names.H_ERROR_MESSAGE: "disk full",
        names.H_ERROR_TRACE: "trace",
        names.H_FAILED_AT: str(NOW),
        names.H_NOT_BEFORE: str(NOW),
        names.H_TARGET: "emails.high",
    }
    h = as_dict(replay_headers(dead, "emails.dlq/2/77"))
    assert h[names.H_ATTEMPT] == "1"
    assert h[names.H_REPLAY_OF] == "emails.dlq/2/77"
    assert h[names.H_ID] == "task-9"
    for gone in (names.H_ERROR_TYPE, names.H_ERROR_MESSAGE, names.H_ERROR_TRACE, names.H_FAILED_AT,
                 names.H_NOT_BEFORE, names.H_TARGET):
        assert gone not in h
    for kept in (names.H_TYPE, names.H_MAX_ATTEMPTS, names.H_ENQUEUED_AT, names.H_PRIORITY, names.H_TRACEPARENT,
                 "x-custom"):
        assert h[kept] == ORIGINAL[kept]


def test_replay_headers_replace_an_earlier_replay_mark() -> None:
    h = as_dict(replay_headers({**ORIGINAL, names.H_REPLAY_OF: "emails.dlq/0/1"}, "emails.dlq/0/9"))
    assert h[names.H_REPLAY_OF] == "emails.dlq/0/9"


def test_replayed_record_reads_as_a_first_attempt() -> None:
    task = make_task(max_attempts=3)
    replayed = replay_headers({**ORIGINAL, names.H_ATTEMPT: "3", names.H_ERROR_TYPE: "E"}, "emails.dlq/0/4")
    item = WorkItem("emails", 0, 1, b"k", b"{}", replayed, QUEUE, task=task)
    assert item.meta.attempt == 1
    assert item.meta.max_attempts == 3
    assert item.task_id == "task-9"


def test_a_cancelled_task_settles_as_a_control_tombstone_and_a_cancelled_event() -> None:
    from kqueue.core import names as kq_names
    from kqueue.core.records import RecordKind
    from kqueue.core.status import TaskEvent
    from kqueue.worker.routing import cancel_records
    from kqueue.worker.work import WorkItem

    item = WorkItem("p.jobs", 1, 7, b"k", b"{}", {"kq-id": b"t-1", "kq-type": b"job", "kq-attempt": b"2"}, "jobs")
    tombstone, status = cancel_records(item, "p.", 1234)
    assert (tombstone.kind, tombstone.topic, tombstone.key, tombstone.value) == (
        RecordKind.CANCEL, kq_names.control_topic("p."), b"t-1", None)
    assert status.topic == kq_names.status_topic("p.") and status.key == b"t-1" and status.value is not None
    assert TaskEvent.decode(status.value) == TaskEvent("t-1", "jobs", "job", "cancelled", 2, 1234)


def test_the_cancel_watch_keeps_pending_cancels_until_their_tombstone() -> None:
    from kqueue.core.control import ControlCommand
    from kqueue.worker.cancels import CancelWatch

    watch = CancelWatch("localhost:1", "_kqueue.control")  # never started: only its bookkeeping
    watch._apply(b"t-1", ControlCommand("cancel", "t-1", int(time.time() * 1000)).encode())  # fresh: not expired
    watch._apply(b"jobs", ControlCommand("pause", "jobs", 1).encode())  # not a cancel
    watch._apply(b"t-2", b"not avro")  # skipped, not fatal
    assert watch.pending == {"t-1"}
    watch._apply(b"t-1", None)
    assert watch.pending == set()


@pytest.mark.parametrize(("value", "kept", "note"), [
    ({"sum": 3, "tags": ["é"]}, '{"sum":3,"tags":["é"]}', None),
    (None, "null", None),
    ({1, 2}, None, "not JSON"),
    ("x" * (RESULT_LIMIT + 1), None, f"over the {RESULT_LIMIT}-byte limit"),
])
def test_a_kept_result_is_one_completed_event_with_the_json_or_why_not(value: object, kept: str | None,
                                                                       note: str | None) -> None:
    item = make_item(task_headers(attempt=2), task=make_task())
    item.result = value
    (record,) = result_records(item, "p.", NOW, "worker-1")
    assert record.kind is RecordKind.RESULT and SETTLEMENT_OF_KIND[record.kind] is Settlement.COMPLETED
    assert record.topic == "p._kqueue.status" and record.key == b"task-1"
    assert record.value is not None
    event = TaskEvent.decode(record.value)
    assert (event.status, event.attempt, event.worker, event.result, event.at_ms) == (
        "completed", 2, "worker-1", kept, NOW)
    assert (event.error is None) if note is None else (note in (event.error or ""))


@pytest.mark.parametrize("target", [b"no-such-topic", b"other.high", b"emails.dlq", b"emails.delay.5s", b"emails.x"])
def test_a_target_outside_the_queues_lanes_is_dead_lettered_with_the_reason(target: bytes) -> None:
    """Before, any kq-target was produced to: a missing topic aborted the worker's one transaction
    for all its partitions, again and again."""
    letter, event = route_due(tier_item(NOW - 1, target=target), make_app().tiers, "", NOW)
    assert (letter.kind, letter.topic, letter.partition) == ("dead-letter", "emails.dlq", 2)
    h = as_dict(letter.headers)
    assert h[names.H_ERROR_TYPE] == "InvalidTarget"
    assert target.decode() in h[names.H_ERROR_MESSAGE] and "emails.high" in h[names.H_ERROR_MESSAGE]
    assert event.topic == names.status_topic()


@pytest.mark.parametrize("target", [b"emails", b"emails.high", b"emails.low"])
def test_every_lane_of_the_queue_is_a_valid_target(target: bytes) -> None:
    [out] = route_due(tier_item(NOW - 1, target=target), make_app().tiers, "", NOW)
    assert out.kind == "deliver" and out.topic == target.decode()
