"""The status view's decisions without a broker: status derivation, record reading, the commit
fence, and the sqlite store's ordering rules (records of one task read out of order)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from kqueue.core import completed as completed_metadata
from kqueue.core import names
from kqueue.core.codec import encode_avro
from kqueue.core.ids import derived_task_id
from kqueue.core.reports import RunningTask, WorkerReport
from kqueue.core.status import TaskEvent
from kqueue.core.system_schemas import TASK_EVENT_V1_SCHEMA
from kqueue.view.derive import Settled, TaskRow, TaskStatus, derive
from kqueue.view.reading import PendingFence, lowest_commits, position_of, replay_generation
from kqueue.view.store import DeadLetterRow, IngestBatch, Position, StatusStore

NOW = 1_800_000_000_000


def lane_row(offset: int = 10, attempt: int = 1, **more: object) -> TaskRow:
    return TaskRow("t1", "q", "work", "q", 0, offset, -1, attempt, False, None, NOW - 5000, **more)  # type: ignore[arg-type]


def test_a_lane_position_is_queued_until_the_commit_passes_it() -> None:
    row = lane_row(offset=10)
    assert derive(row, None, NOW).status == "queued"
    assert derive(row, Settled(10, "", NOW), NOW).status == "queued"  # the commit is at it: not passed
    done = derive(row, Settled(11, "", NOW - 100), NOW)
    assert (done.status, done.finished_at) == ("completed", NOW - 100)


def test_completed_above_a_commit_comes_from_its_kq1_metadata() -> None:
    row = lane_row(offset=14)
    assert derive(row, Settled(10, completed_metadata.encode(10, {12, 14}), NOW), NOW).status == "completed"
    assert derive(row, Settled(10, completed_metadata.encode(10, {12, 13}), NOW), NOW).status == "queued"
    assert derive(row, Settled(10, "not-ours", NOW), NOW).status == "queued"


@pytest.mark.parametrize(("attempt", "expected"), [(1, "scheduled"), (2, "retrying"), (5, "retrying")])
def test_a_tier_position_is_scheduled_or_retrying_with_its_next_time(attempt: int, expected: str) -> None:
    row = TaskRow("t1", "q", "work", "q.delay.5s", 0, 3, -1, attempt, True, "5s", NOW, NOW + 4000)
    status = derive(row, None, NOW)
    assert (status.status, status.next_attempt_at, status.tier) == (expected, NOW + 4000, "5s")


def test_final_events_win_over_positions_unless_the_task_came_back_later() -> None:
    failed = lane_row(offset=10, attempt=3, event="failed", event_attempt=3, event_ms=NOW - 1000, error="E: x")
    assert derive(failed, None, NOW).status == "failed"
    assert derive(failed, None, NOW).error == "E: x"
    # An event of an older attempt says nothing about the newer position.
    old = lane_row(offset=10, attempt=3, event="failed", event_attempt=2, event_ms=NOW - 1000)
    assert derive(old, None, NOW).status == "queued"
    # Replayed from the DLQ: a newer generation appended after the failure is queued again.
    replayed = TaskRow("t1", "q", "work", "q", 0, 50, 7, 1, False, None, NOW - 10, event="failed", event_attempt=3,
                       event_ms=NOW - 1000)
    assert derive(replayed, None, NOW).status == "queued"
    cancelled = lane_row(event="cancelled", event_attempt=1, event_ms=NOW - 10, cancel_ms=NOW - 500)
    status = derive(cancelled, None, NOW)
    assert (status.status, status.cancel_requested) == ("cancelled", False)


def test_processing_needs_a_fresh_report_of_the_same_attempt() -> None:
    running = lane_row(offset=10, attempt=2, worker="w1", started_ms=NOW - 2000, run_attempt=2, run_seen_ms=NOW - 500)
    status = derive(running, None, NOW)
    assert (status.status, status.worker, status.started_at) == ("processing", "w1", NOW - 2000)
    stale = lane_row(offset=10, attempt=2, worker="w1", started_ms=NOW - 2000, run_attempt=2,
                     run_seen_ms=NOW - 60_000)
    assert derive(stale, None, NOW).status == "queued"  # its worker is gone: it will run again
    earlier_attempt = lane_row(offset=10, attempt=2, run_attempt=1, started_ms=NOW - 2000, run_seen_ms=NOW - 100)
    assert derive(earlier_attempt, None, NOW).status == "queued"
    assert derive(running, Settled(11, "", NOW), NOW).status == "completed"  # the commit outranks a report


def test_an_accepted_task_not_read_back_yet() -> None:
    accepted = TaskRow("t1", "q", "work", accepted_ms=NOW - 10)
    assert derive(accepted, None, NOW).status == "queued"
    delayed = TaskRow("t1", "q", "work", accepted_ms=NOW - 10, not_before=NOW + 3000, tier="5s")
    assert derive(delayed, None, NOW).status == "scheduled"


def test_status_json_round_trip() -> None:
    status = derive(lane_row(event="completed", event_attempt=1, event_ms=NOW, result='{"a":[1,2]}'), None, NOW)
    again = TaskStatus.from_json(status.as_json())
    assert again == status and again.value == {"a": [1, 2]} and again.finished


# -- reading records ----------------------------------------------------------------------------------
def test_position_of_a_retry_in_a_tier() -> None:
    headers = {names.H_ID: "abc", names.H_TYPE: "work", names.H_ATTEMPT: "3", names.H_NOT_BEFORE: str(NOW + 100),
               names.H_ERROR_TYPE: "ValueError", names.H_ERROR_MESSAGE: "bad", names.H_ENQUEUED_AT: "5",
               names.H_MAX_ATTEMPTS: "4"}
    position = position_of("p.q.delay.1s", 2, 40, NOW, headers, "p.")
    assert (position.task_id, position.queue, position.tier, position.attempt) == ("abc", "q", "1s", 3)
    assert (position.not_before, position.error, position.enqueued_ms, position.max_attempts) == (
        NOW + 100, "ValueError: bad", 5, 4)


def test_position_of_a_foreign_record_without_headers() -> None:
    position = position_of("q", 1, 9, NOW, {})
    # The id the worker derives for such a record too (so its dead letter and status match).
    assert position.task_id == derived_task_id("q", 1, 9)
    assert (position.attempt, position.tier, position.generation) == (1, None, -1)
    assert position_of("q", 1, 9, NOW, {names.H_ATTEMPT: "zero"}).attempt == 1


def test_replay_generation() -> None:
    assert replay_generation(None) == -1
    assert replay_generation("q.dlq/2/17") == 17
    assert replay_generation("garbage") == -1


def test_the_fence_waits_for_every_outcome_partition() -> None:
    fence = PendingFence({("q", 0): (12, "")}, {("q.delay.1s", 0): 5, ("_kqueue.status", 3): 8, ("x", 0): 0}, NOW)
    assert not fence.reached({("q.delay.1s", 0): 5})
    assert not fence.reached({("q.delay.1s", 0): 5, ("_kqueue.status", 3): 7})
    assert fence.reached({("q.delay.1s", 0): 6, ("_kqueue.status", 3): 8})
    published = fence.settled(NOW, {})
    assert published == {("q", 0): Settled(12, "", NOW)}
    assert fence.settled(NOW + 5, published) == {}  # unchanged: nothing to publish again


def test_several_groups_settle_a_task_only_when_all_did() -> None:
    a = {("q", 0): (10, ""), ("q", 1): (4, "")}
    b = {("q", 0): (7, "kq1:x"), ("q", 2): (3, "")}
    assert lowest_commits([a, b]) == {("q", 0): (7, "kq1:x")}
    assert lowest_commits([a]) == a
    assert lowest_commits([]) == {}
    assert lowest_commits([{("q", 0): (-1001, "")}]) == {}


# -- the store -----------------------------------------------------------------------------------------
def _position(offset: int, attempt: int, tier: str | None = None, generation: int = -1) -> Position:
    topic = f"q.delay.{tier}" if tier else "q"
    return Position("t1", "q", "work", topic, 0, offset, generation, attempt, tier, NOW + offset, None, 1, 3, None)


def test_positions_read_out_of_order_never_move_a_task_back(tmp_path: Path) -> None:
    store = StatusStore(tmp_path / "v.db")
    # Attempt 2 delivered to the lane is read before the retry that put it in the tier.
    store.write(IngestBatch(positions=[_position(50, 2)]), NOW)
    store.write(IngestBatch(positions=[_position(7, 2, tier="1s"), _position(10, 1)]), NOW)
    row = store.row("t1")
    assert row is not None and (row.topic, row.offset, row.attempt, row.in_tier) == ("q", 50, 2, False)
    store.write(IngestBatch(positions=[_position(8, 3, tier="1s")]), NOW)
    row = store.row("t1")
    assert row is not None and (row.topic, row.attempt, row.in_tier, row.tier) == ("q.delay.1s", 3, True, "1s")
    store.write(IngestBatch(positions=[_position(90, 1, generation=4)]), NOW)  # replayed: a new life
    row = store.row("t1")
    assert row is not None and (row.offset, row.attempt, row.generation) == (90, 1, 4)


def test_events_reports_cancels_and_positions_meet_in_one_row(tmp_path: Path) -> None:
    store = StatusStore(tmp_path / "v.db")
    report = WorkerReport("w1", "g", "m", NOW, 4, 1, ("q/0",), (RunningTask("t1", "q", "work", 1, NOW - 300),))
    store.write(IngestBatch(reports=[report], cancels=[("t1", NOW - 1)],
                            read_positions={("q", 0): 11, ("_kqueue.status", 0): 3}), NOW)
    store.write(IngestBatch(positions=[_position(10, 1)]), NOW)
    row = store.row("t1")
    assert row is not None
    assert (row.worker, row.started_ms, row.run_attempt, row.cancel_ms, row.offset) == ("w1", NOW - 300, 1, NOW - 1, 10)
    # An older report arriving late does not overwrite a newer one.
    older = WorkerReport("w0", "g", "m", NOW - 5000, 4, 1, (), (RunningTask("t1", "q", "work", 1, NOW - 9000),))
    store.write(IngestBatch(reports=[older]), NOW)
    assert store.row("t1").worker == "w1"  # type: ignore[union-attr]
    store.write(IngestBatch(events=[TaskEvent("t1", "q", "work", "completed", 1, NOW, None, "w1", "[1]")]), NOW)
    row = store.row("t1")
    assert row is not None and (row.event, row.result) == ("completed", "[1]")
    assert store.read_positions() == {("q", 0): 11, ("_kqueue.status", 0): 3}
    assert [w["worker_id"] for w in store.workers()] == ["w0", "w1"]


def test_accept_does_not_clobber_what_the_ingest_read(tmp_path: Path) -> None:
    store = StatusStore(tmp_path / "v.db")
    store.write(IngestBatch(positions=[_position(10, 1)]), NOW)
    store.accept("t1", "q", "work", NOW)
    row = store.row("t1")
    assert row is not None and row.offset == 10 and row.accepted_ms is None
    store.accept("t2", "q", "work", NOW, NOW + 5000, "5s")
    assert derive(store.row("t2"), None, NOW).status == "scheduled"  # type: ignore[arg-type]


def test_trim_forgets_the_least_recently_touched(tmp_path: Path) -> None:
    store = StatusStore(tmp_path / "v.db")
    for n in range(10):
        store.accept(f"t{n}", "q", "work", NOW + n)
    store.write(IngestBatch(events=[TaskEvent("t0", "q", "work", "failed", 1, NOW - 10_000, "E")]), NOW - 10_000)
    letters = [DeadLetterRow("q", 0, i, f"t{i}", "work", 1, NOW + i, "E") for i in range(6)]
    store.write(IngestBatch(dead_letters=letters), NOW)
    assert store.trim(4) == 6
    assert store.count() == 4 and store.row("t0") is None and store.row("t9") is not None
    assert store.timeline("t0") == []  # its history went with it
    assert [row.task_id for row, _ in store.dead_letters("q", 100)] == ["t5", "t4", "t3", "t2"]


def test_settled_and_groups_round_trip(tmp_path: Path) -> None:
    store = StatusStore(tmp_path / "v.db")
    store.publish_settled({("q", 0): Settled(5, "kq1:x", NOW)}, {})
    store.set_groups({"q": ["g1", "g2"]})
    assert store.settled("q", 0) == Settled(5, "kq1:x", NOW) and store.settled("q", 1) is None
    assert store.groups() == {"q": ["g1", "g2"]}
    assert store.all_settled() == {("q", 0): Settled(5, "kq1:x", NOW)}


def test_a_commit_passing_tasks_finishes_them_and_their_timeline_says_so(tmp_path: Path) -> None:
    store = StatusStore(tmp_path / "v.db")
    lane = [Position(f"t{i}", "q", "work", "q", 0, i, -1, 1, None, NOW - 1000 + i, None, NOW - 2000, 3, None)
            for i in range(4)]
    retry = Position("t1", "q", "work", "q.delay.1s", 0, 0, -1, 2, "1s", NOW - 500, NOW + 500, NOW - 2000, 3, "E: x")
    failed = TaskEvent("t2", "q", "work", "failed", 1, NOW - 100, "E: y")
    store.write(IngestBatch(positions=[*lane, retry], events=[failed]), NOW)
    store.publish_settled({("q", 0): Settled(3, "", NOW)}, {})
    done = {t: store.row(t).done_ms for t in ("t0", "t1", "t2", "t3")}  # type: ignore[union-attr]
    # t0 passed by the commit; t1 moved to a tier; t2 finished when it failed; t3 is above the commit.
    assert done == {"t0": NOW, "t1": None, "t2": NOW - 100, "t3": None}
    assert [e["what"] for e in store.timeline("t1")] == ["enqueued on q (attempt 1)",
                                                         "waiting in the 1s tier (attempt 2)"]
    assert store.timeline("t1")[1]["detail"] == "after E: x"
    assert [e["what"] for e in store.timeline("t0")] == ["enqueued on q (attempt 1)", "completed"]
    assert [e["what"] for e in store.timeline("t2")][-1] == "failed (attempt 1)"
    series = store.series("q", NOW + 1, minutes=1)
    assert sum(b["completed"] for b in series) == 1 and sum(b["failed"] for b in series) == 1
    assert [b["p50_ms"] for b in series if b["completed"]] == [2000]


def test_an_event_written_before_worker_and_result_existed_still_decodes() -> None:
    old = encode_avro(TASK_EVENT_V1_SCHEMA, {"task_id": "t", "queue": "q", "task_type": "w", "status": "failed",
                                             "attempt": 2, "error": "E", "at_ms": 5})
    assert TaskEvent.decode(old) == TaskEvent("t", "q", "w", "failed", 2, 5, "E", None, None)
    report = WorkerReport("w", "g", "m", 1, 2, 3, ("a/0",), (RunningTask("t", "q", "w", 1, 0),), True)
    assert WorkerReport.decode(report.encode()) == report


def test_a_lane_record_read_after_the_commit_passed_it_is_finished_when_read(tmp_path: Path) -> None:
    store = StatusStore(tmp_path / "v.db")
    store.publish_settled({("q", 0): Settled(10, "", NOW)}, {})
    late = Position("t1", "q", "work", "q", 0, 4, -1, 1, None, NOW - 9000, None, NOW - 9000, 3, None)
    store.write(IngestBatch(positions=[late]), NOW + 50)
    row = store.row("t1")
    assert row is not None and row.done_ms == NOW + 50
    assert [e["what"] for e in store.timeline("t1")][-1] == "completed"


def test_foreign_headers_with_huge_numbers_are_stored_not_fatal(tmp_path: Path) -> None:
    store = StatusStore(tmp_path / "v.db")
    huge = {names.H_ID: "t9", names.H_ATTEMPT: "9" * 15, names.H_ENQUEUED_AT: "-" + "9" * 25,
            names.H_NOT_BEFORE: "12abc", names.H_FAILED_AT: str(2**70)}
    position = position_of("q.delay.1s", 0, 1, NOW, huge)
    assert position.attempt == 2**31 - 1 and position.enqueued_ms is None and position.not_before is None
    store.write(IngestBatch(positions=[position]), NOW)
    assert store.row("t9") is not None
    assert position_of("q", 0, 2, NOW, {names.H_ATTEMPT: "9" * 30}).attempt == 1  # unreadable: a first attempt
    from kqueue.view.reading import dead_letter_of

    letter = dead_letter_of("q.dlq", 0, 3, huge)
    assert letter.failed_at == 0 and letter.attempts == 2**31 - 1
    store.write(IngestBatch(dead_letters=[letter]), NOW)


# -- ordered retries: a parked task ------------------------------------------------------------------
def test_a_parked_task_reads_parked_though_the_commit_passed_it() -> None:
    row = lane_row(offset=10, event="parked", event_attempt=1, event_ms=NOW - 100)
    assert derive(row, Settled(50), NOW).status == "parked"
    row.cancel_ms = NOW - 50  # a cancel of a parked task: it never runs
    assert derive(row, Settled(50), NOW).status == "cancelled"


def test_a_parked_tasks_copy_takes_its_place_and_completes(tmp_path: Path) -> None:
    store = StatusStore(tmp_path / "v.db")
    store.write(IngestBatch(positions=[_position(10, 1)]), NOW)
    store.write(IngestBatch(events=[TaskEvent("t1", "q", "work", "parked", 1, NOW + 20)]), NOW)
    other = dataclasses.replace(_position(70, 1), copy_of="q/0/9")  # a copy of another position: ignored
    store.write(IngestBatch(positions=[other]), NOW)
    row = store.row("t1")
    assert row is not None and row.offset == 10
    assert derive(row, Settled(11), NOW).status == "parked"
    copy = dataclasses.replace(_position(80, 1), copy_of="q/0/10")
    store.write(IngestBatch(positions=[copy]), NOW)
    row = store.row("t1")
    assert row is not None and row.offset == 80
    assert derive(row, Settled(11), NOW).status == "queued"
    assert derive(row, Settled(81), NOW).status == "completed"


def test_a_lane_record_names_the_position_it_is_a_copy_of() -> None:
    origin = {names.H_ID: "t1", names.H_ORIGIN: "q/0/10"}
    assert position_of("q", 0, 80, NOW, origin).copy_of == "q/0/10"
    assert position_of("q", 0, 10, NOW, origin).copy_of is None  # itself
    assert position_of("q", 1, 80, NOW, origin).copy_of is None  # another partition: not a copy
    assert position_of("q.delay.1s", 0, 3, NOW, origin).copy_of is None  # a retry in a tier


def test_only_parked_events_need_the_newest_task_event_schema() -> None:
    from kqueue.core.system_schemas import TASK_EVENT_SCHEMA, TASK_EVENT_V2_SCHEMA

    # Pinned: the fingerprints older readers know; every event but `parked` is written with them.
    assert TASK_EVENT_V1_SCHEMA.fingerprint.hex() == "24a57e48e6095d18"
    assert TASK_EVENT_V2_SCHEMA.fingerprint.hex() == "7274ddceefcc8898"
    done = TaskEvent("t1", "q", "work", "completed", 1, NOW)
    parked = TaskEvent("t1", "q", "work", "parked", 1, NOW, "waiting")
    assert done.encode()[2:10] == TASK_EVENT_V2_SCHEMA.fingerprint
    assert parked.encode()[2:10] == TASK_EVENT_SCHEMA.fingerprint
    assert TaskEvent.decode(parked.encode()) == parked and TaskEvent.decode(done.encode()) == done
