"""A cancel reaches only the life of the task it was issued for, and expires (defect 8): the pure
rules, the pending set the worker checks, the command's wire format, and what `app.cancel` decides."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

import kqueue
from kqueue.core import names
from kqueue.core.codec import SchemaStore, decode_payload
from kqueue.core.control import (
    DEFAULT_CANCEL_EXPIRY,
    ControlCommand,
    PendingCancels,
    cancel_applies,
    cancel_expiry_seconds,
    life_started_ms,
    reaches_life,
)
from kqueue.core.headers import replay_headers, retry_headers
from kqueue.core.system_schemas import CONTROL_COMMAND, CONTROL_COMMAND_V1_SCHEMA
from kqueue.sdk.cancel import CancelResult, plan_cancel
from kqueue.sdk.context import TaskContext
from kqueue.sdk.status_client import StatusUnavailable, TaskNotFound
from kqueue.sdk.task import TaskDef
from kqueue.view.derive import TaskStatus
from kqueue.worker.cancels import CancelWatch
from kqueue.worker.runner import Runner
from kqueue.worker.work import Failure, WorkItem

NOW = 1_700_000_000_000
DAY = 86_400_000
WEEK = int(DEFAULT_CANCEL_EXPIRY * 1000)


def _headers(enqueued: int, **extra: str) -> dict[str, bytes]:
    return {names.H_ID: b"t-1", names.H_ENQUEUED_AT: str(enqueued).encode(),
            **{k: v.encode() for k, v in extra.items()}}


def _item(raw: dict[str, bytes]) -> WorkItem:
    return WorkItem("q", 0, 0, None, b"{}", raw, "q")


def _pending(at_ms: int, due_at_ms: int | None = None, target: str = "t-1") -> PendingCancels:
    pending = PendingCancels()
    pending.add_cancel(ControlCommand("cancel", target, at_ms, due_at_ms), WEEK)
    return pending


# -- which life a cancel reaches --------------------------------------------------------------------
def test_a_cancel_reaches_lives_begun_at_or_before_it_and_no_later_one() -> None:
    assert reaches_life(NOW, _headers(NOW - 1))
    assert reaches_life(NOW, _headers(NOW))
    assert not reaches_life(NOW, _headers(NOW + 1))  # enqueued again after the cancel: a new life


def test_a_replay_begins_a_new_life_and_its_retries_keep_it() -> None:
    dead = {k: v.decode() for k, v in _headers(NOW - DAY).items()}
    replayed = dict(replay_headers(dead, "q.dlq/0/4"))
    started = int(replayed[names.H_REPLAYED_AT])
    assert life_started_ms(replayed) == started > NOW - DAY
    assert not reaches_life(started - 1, replayed)  # cancelled before the replay: not this life
    assert reaches_life(started, replayed)
    retried = dict(retry_headers({k: v.decode() for k, v in replayed.items()}, "t-1", "q/0/9", 2, 5, started + 5,
                                 "q", "E", "boom"))
    assert life_started_ms(retried) == started  # a retry is the same life


def test_a_record_that_says_nothing_of_its_life_is_cancelled_as_before() -> None:
    assert life_started_ms({names.H_ID: b"t-1"}) is None
    assert reaches_life(NOW, {names.H_ID: b"t-1"})
    assert reaches_life(NOW, {names.H_ENQUEUED_AT: b"garbage"})


def test_the_pending_set_checks_the_life_only_for_a_matching_id() -> None:
    pending = _pending(NOW)
    assert "t-1" in pending and pending  # still a set of ids for the cheap checks
    assert cancel_applies(pending, _item(_headers(NOW - 5)))
    assert cancel_applies(pending, _item(_headers(NOW - 5, **{names.H_ATTEMPT: "3"})))  # a retry of that life
    assert not cancel_applies(pending, _item(_headers(NOW + 5)))  # a later task with the same id
    assert not cancel_applies(pending, _item({names.H_ID: b"t-2", names.H_ENQUEUED_AT: str(NOW - 5).encode()}))
    assert cancel_applies({"t-1"}, _item(_headers(NOW + 5)))  # a plain set of ids knows no lives


def test_a_newer_cancel_of_the_same_id_replaces_the_older_one() -> None:
    pending = _pending(NOW)
    pending.add_cancel(ControlCommand("cancel", "t-1", NOW + 100), WEEK)
    assert pending.issued_at("t-1") == NOW + 100
    assert cancel_applies(pending, _item(_headers(NOW + 50)))
    pending.retire("t-1")
    assert not pending and pending.issued_at("t-1") is None


# -- expiry ---------------------------------------------------------------------------------------------
def test_a_cancel_expires_after_the_expiry_and_the_sweep_is_free_before_then() -> None:
    pending = _pending(NOW)
    pending.add_cancel(ControlCommand("cancel", "t-2", NOW + DAY), WEEK)
    assert pending.next_expiry == NOW + WEEK
    assert pending.expire(NOW + WEEK - 1) == []
    assert pending.expire(NOW + WEEK) == ["t-1"]
    assert pending == {"t-2"} and pending.next_expiry == NOW + DAY + WEEK
    assert pending.expire(NOW + DAY + WEEK) == ["t-2"] and not pending


def test_a_cancel_of_a_scheduled_task_expires_counting_from_when_it_is_due() -> None:
    pending = _pending(NOW, due_at_ms=NOW + 30 * DAY)
    assert pending.expire(NOW + WEEK) == []
    assert pending.expire(NOW + 30 * DAY + WEEK) == ["t-1"]


def test_the_watch_drops_a_cancel_that_had_expired_before_it_was_read() -> None:
    watch = CancelWatch("localhost:1", "_kqueue.control", expiry=60, clock=lambda: NOW)  # never started
    watch._apply(b"t-1", ControlCommand("cancel", "t-1", NOW - 1000).encode())
    watch._apply(b"t-2", ControlCommand("cancel", "t-2", NOW - 61_000).encode())
    assert watch.pending == {"t-1"}
    watch._apply(b"t-1", ControlCommand("cancel", "t-1", NOW - 61_000).encode())  # replaces the live one
    assert watch.pending == set()


@pytest.mark.parametrize(("text", "seconds"), [(None, DEFAULT_CANCEL_EXPIRY), ("36h", 129_600.0), ("90", 90.0)])
def test_the_expiry_comes_from_kqueue_cancel_expiry(text: str | None, seconds: float) -> None:
    assert cancel_expiry_seconds({} if text is None else {"KQUEUE_CANCEL_EXPIRY": text}) == seconds


@pytest.mark.parametrize("text", ["0", "soon", "-1d"])
def test_a_bad_kqueue_cancel_expiry_is_one_clear_error(text: str) -> None:
    with pytest.raises(ValueError, match=r"KQUEUE_CANCEL_EXPIRY|not a duration"):
        cancel_expiry_seconds({"KQUEUE_CANCEL_EXPIRY": text})


# -- the command on the wire ------------------------------------------------------------------------
def test_a_command_without_a_due_time_keeps_the_first_schema_so_older_workers_read_it() -> None:
    command = ControlCommand("cancel", "t-1", NOW)
    old_store = SchemaStore()
    old_store.add(CONTROL_COMMAND_V1_SCHEMA)
    old = decode_payload(command.encode(), "avro", CONTROL_COMMAND_V1_SCHEMA, old_store)
    assert old == {"command": "cancel", "target": "t-1", "at_ms": NOW}
    assert ControlCommand.decode(command.encode()) == command
    scheduled = ControlCommand("cancel", "t-1", NOW, NOW + DAY)
    assert ControlCommand.decode(scheduled.encode()) == scheduled


def test_the_shipped_schema_file_matches_the_packaged_schema() -> None:
    path = Path(__file__).resolve().parents[2] / "schemas" / "control_command.avsc"
    assert json.loads(path.read_text(encoding="utf-8")) == CONTROL_COMMAND


# -- the worker's checks -------------------------------------------------------------------------------
def test_the_runner_runs_a_later_task_with_a_cancelled_id_and_cancels_the_earlier_one() -> None:
    app = kqueue.App("cancel-lives", "localhost:1")
    ran: list[str] = []
    sync_task = app.task(queue="q", name="s")(lambda payload: ran.append("sync"))

    async def async_handler(payload: object) -> None:
        ran.append("async")

    async_task = app.task(queue="q", name="a")(async_handler)
    runner = Runner(None, _pending(NOW))

    def run(task: TaskDef, enqueued: int) -> Failure | None:
        item = WorkItem("q", 0, 0, None, b"{}", _headers(enqueued), "q", task=task, payload={})
        return runner.run_sync(item) if task is sync_task else asyncio.run(runner.run_async(item))

    for task in (sync_task, async_task):
        cancelled = run(task, NOW - 1)  # enqueued before the cancel: not run
        assert cancelled is not None and cancelled.cancelled
        assert run(task, NOW + 1) is None  # enqueued after it: runs
    assert ran == ["sync", "async"]


def test_ctx_cancelled_is_false_for_a_later_task_with_a_cancelled_id() -> None:
    pending = _pending(NOW)

    def ctx(enqueued: int) -> TaskContext:
        return TaskContext("t-1", "s", "q", None, 1, 5, "q", 0, 0, enqueued,
                           {names.H_ENQUEUED_AT: str(enqueued)}, pending)

    assert ctx(NOW - 1).cancelled
    assert not ctx(NOW + 1).cancelled


# -- what app.cancel decides ------------------------------------------------------------------------
def _status(status: str, next_attempt_at: int | None = None) -> TaskStatus:
    return TaskStatus("t-1", status, "q", "s", 1, 5, NOW - 10, None, None, next_attempt_at, None, None, None, None,
                      False)


@pytest.mark.parametrize("status", ["completed", "failed", "cancelled"])
def test_a_finished_task_is_not_cancelled_again(status: str) -> None:
    command, result = plan_cancel("t-1", _status(status), NOW)
    assert command is None and not result.sent and result.outcome == "finished"
    assert result.ok == (status == "cancelled")
    assert "\n" not in str(result) and status in str(result)


def test_an_unknown_or_unchecked_id_is_cancelled_for_lives_begun_before_now() -> None:
    command, result = plan_cancel("t-1", TaskNotFound("no task 't-1'"), NOW)
    assert command == ControlCommand("cancel", "t-1", NOW) and result.sent and not result.ok
    assert str(result).startswith("no task t-1 is known")
    command, result = plan_cancel("t-1", StatusUnavailable("cannot reach the status API"), NOW)
    assert command == ControlCommand("cancel", "t-1", NOW) and result.sent and result.ok
    assert str(result) == ("cancel requested for t-1, but its status could not be checked: cannot reach the "
                           "status API")


def test_a_scheduled_task_gets_a_cancel_that_lasts_until_it_is_due() -> None:
    command, result = plan_cancel("t-1", _status("scheduled", NOW + 30 * DAY), NOW)
    assert command == ControlCommand("cancel", "t-1", NOW, NOW + 30 * DAY)
    assert result == CancelResult("t-1", "requested", _status("scheduled", NOW + 30 * DAY)) and result.ok
    command, _ = plan_cancel("t-1", _status("queued"), NOW)
    assert command == ControlCommand("cancel", "t-1", NOW)
