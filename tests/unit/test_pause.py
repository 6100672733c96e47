"""Pause and resume, the parts that need no broker: folding `_kqueue.control` records into the paused
queues, the command on the wire (older versions' bytes unchanged), the hold-back rule a runner asks
before it starts a task of a paused queue, and the status view's table of paused queues."""

from __future__ import annotations

import dataclasses
import re
from collections import deque
from pathlib import Path

import pytest
from rich.console import Console

from kqueue.cli.stats_cmd import render
from kqueue.control.stats import QueueStats, with_rates
from kqueue.core.codec import SchemaStore, decode_payload
from kqueue.core.control import ControlCommand, Paused, QueuePauses, pause_after, pause_command
from kqueue.core.system_schemas import CONTROL_COMMAND_V1_SCHEMA, CONTROL_COMMAND_V2_SCHEMA
from kqueue.view.store import IngestBatch, StatusStore
from kqueue.worker.cancels import CancelWatch
from kqueue.worker.partitions import PartitionOwner
from kqueue.worker.pausing import PausedWork
from kqueue.worker.work import WorkItem

NOW = 1_700_000_000_000


# -- folding ---------------------------------------------------------------------------------------------
def test_the_newest_record_of_a_queue_is_its_state() -> None:
    paused = Paused(NOW, "incident")
    assert pause_after(None, ControlCommand("pause", "email", NOW, reason="incident")) == paused
    assert pause_after(paused, ControlCommand("resume", "email", NOW + 5)) is None
    assert pause_after(paused, None) is None  # a tombstone
    assert pause_after(paused, ControlCommand("cancel", "email", NOW + 5)) == paused  # a task id, not news
    assert pause_after(None, ControlCommand("pause", "email", NOW)) == Paused(NOW, None)


def test_a_repeated_pause_keeps_its_since_and_its_reason_unless_given_a_new_one() -> None:
    first = pause_command("email", None, "incident", NOW)
    assert first == ControlCommand("pause", "email", NOW, reason="incident")
    current = pause_after(None, first)
    again = pause_command("email", current, None, NOW + 60_000)
    assert pause_after(current, again) == Paused(NOW, "incident")
    renamed = pause_command("email", current, "deploy", NOW + 60_000)
    assert pause_after(current, renamed) == Paused(NOW, "deploy")


def test_queue_pauses_move_their_version_only_on_a_change() -> None:
    pauses = QueuePauses()
    assert pauses.apply("email", ControlCommand("pause", "email", NOW, reason="x"))
    version = pauses.version
    assert not pauses.apply("email", ControlCommand("pause", "email", NOW, reason="x"))  # read again
    assert not pauses.apply("t-1", None)  # a cancel's tombstone
    assert pauses.version == version
    assert pauses.snapshot() == {"email": Paused(NOW, "x")}
    assert pauses.apply("email", ControlCommand("resume", "email", NOW + 1))
    assert pauses.version == version + 1 and pauses.get("email") is None


def test_the_control_watch_folds_pauses_beside_cancels() -> None:
    watch = CancelWatch("127.0.0.1:1", "_kqueue.control", expiry=3600.0, clock=lambda: NOW)
    watch._apply(b"email", ControlCommand("pause", "email", NOW, reason="incident").encode())
    watch._apply(b"t-1", ControlCommand("cancel", "t-1", NOW).encode())
    assert watch.pauses.snapshot() == {"email": Paused(NOW, "incident")} and watch.pending == {"t-1"}
    watch._apply(b"email", None)  # compaction's tombstone, or a later tool's
    assert watch.pauses.snapshot() == {} and watch.pending == {"t-1"}


# -- on the wire ------------------------------------------------------------------------------------------
def test_commands_without_a_reason_keep_the_older_versions_bytes() -> None:
    """Hex taken from the code before `reason` existed: workers of either older version still read them."""
    assert ControlCommand("cancel", "t-1", NOW).encode().hex() == "c301a22ed9fb92805be10006742d3180a0abfef962"
    assert ControlCommand("cancel", "t-1", NOW, 1_700_000_086_400_000).encode().hex() == (
        "c301c02b2627e102d2f00006742d3180a0abfef9620280f0a4d483898506")
    pause = ControlCommand("pause", "email", NOW)
    assert pause.encode().hex() == "c301a22ed9fb92805be1020a656d61696c80a0abfef962"
    old = SchemaStore()
    old.add(CONTROL_COMMAND_V1_SCHEMA)
    old.add(CONTROL_COMMAND_V2_SCHEMA)
    assert decode_payload(pause.encode(), "avro", CONTROL_COMMAND_V2_SCHEMA, old)["target"] == "email"


@pytest.mark.parametrize("command", [ControlCommand("pause", "email", NOW, reason="incident: db failover"),
                                     ControlCommand("pause", "email", NOW, reason=""),
                                     ControlCommand("resume", "email", NOW)])
def test_a_command_reads_back_as_written(command: ControlCommand) -> None:
    assert ControlCommand.decode(command.encode()) == command


# -- holding back the tasks a runner took -------------------------------------------------------------------
def _owner() -> tuple[PartitionOwner, PausedWork]:
    returned: deque[WorkItem] = deque()
    owner = PartitionOwner(("q", 0), False, edge=None, queue="q")  # type: ignore[arg-type]  # never pauses here
    work = owner.paused_work = PausedWork(returned)
    return owner, work


def _item(owner: PartitionOwner, offset: int, key: bytes) -> WorkItem:
    item = WorkItem("q", 0, offset, key, b"{}", {}, "q")
    item.owner = owner
    return item


def test_a_paused_partitions_tasks_are_handed_back_and_a_running_one_is_not_touched() -> None:
    owner, work = _owner()
    assert not work.hold_back(_item(owner, 0, b"k"))  # not paused: it starts
    work.stopped = True
    held = [_item(owner, n, b"k") for n in (1, 2)]
    assert all(work.hold_back(item) for item in held)
    assert list(work.returned) == held


def test_after_a_resume_no_later_task_of_a_key_starts_before_its_earlier_one_handed_back() -> None:
    """A resume can land while a runner is still inside a key's run: offset 1 was handed back, so 2
    (next in that run) and 3 (queued behind it) go back too, until 1 has started again."""
    owner, work = _owner()
    work.stopped = True
    first, second, later = (_item(owner, n, b"k") for n in (1, 2, 3))
    other = _item(owner, 4, b"other")
    assert work.hold_back(first)
    work.stopped = False  # resumed
    assert work.hold_back(second) and work.hold_back(later)
    assert not work.hold_back(other)  # another key is not held up
    assert not work.hold_back(first)  # the earliest starts again ...
    assert not work.hold_back(second) and not work.hold_back(later)  # ... then the rest, in order
    assert work.diverted == {}


def test_a_task_of_an_ended_ownership_is_left_to_the_executor() -> None:
    owner, work = _owner()
    work.stopped = True
    owner.end()
    assert not work.hold_back(_item(owner, 0, b"k"))
    assert not work.returned


def test_parked_tasks_do_not_count_as_unsettled_and_unpark_in_offset_order() -> None:
    owner, work = _owner()
    items = [_item(owner, n, b"k") for n in range(3)]
    for item in items:
        owner.track(item.offset)
    work.parked += [items[2], items[0], items[1]]
    assert owner.outstanding == 0 and owner.watermark.outstanding == 3
    assert work.unpark() == items
    assert owner.outstanding == 3


# -- the status view's table ---------------------------------------------------------------------------------
def test_the_status_view_keeps_each_queues_newest_pause_across_restarts(tmp_path: Path) -> None:
    store = StatusStore(tmp_path / "view.db")
    batch = IngestBatch(pauses=[("email", Paused(NOW, "incident")), ("sms", Paused(NOW + 1)), ("sms", None)])
    assert batch and len(batch.split()) == 4  # one part per record, and the read positions
    store.write(batch, NOW)
    assert store.pauses() == {"email": Paused(NOW, "incident")}
    store.write(IngestBatch(pauses=[("t-1", None)]), NOW)  # a cancel's tombstone: changes nothing
    assert StatusStore(tmp_path / "view.db").pauses() == {"email": Paused(NOW, "incident")}
    store.note_pause("email", None)  # the API's resume, before the ingest reads it back
    assert store.pauses() == {}


def test_kqueue_stats_shows_since_when_and_why_a_queue_is_paused() -> None:
    stats = QueueStats("email", "g", 0.0, [], 0, 0, 1, paused=Paused(NOW, "incident"))
    assert stats.as_json()["paused"] == {"since": NOW, "reason": "incident"}
    assert with_rates(stats, dataclasses.replace(stats, at=2.0)).paused == Paused(NOW, "incident")
    console = Console(width=200, record=True)
    console.print(render(stats))
    assert re.search(r"paused +since 2023-11-14 22:13:20 UTC: incident", console.export_text(clear=True))
    console.print(render(dataclasses.replace(stats, paused=None)))
    assert re.search(r"paused +no\b", console.export_text())
