"""The queue-wide rate limit's pure parts: its key, the fold of its records, the new ControlCommand
version beside the older ones, and a scripted worker that follows the limit while it runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from kqueue.control.limits import QueueLimitState, parse_queue_rate
from kqueue.core.codec import SchemaStore
from kqueue.core.control import ControlCommand, Paused, QueuePauses
from kqueue.core.errors import DecodeError
from kqueue.core.queue_limits import QueueLimit, limit_after, limit_command, limit_key, queue_of_limit_key
from kqueue.core.ratelimit import Rate
from kqueue.core.system_schemas import (
    CONTROL_COMMAND_SCHEMA,
    CONTROL_COMMAND_V1_SCHEMA,
    CONTROL_COMMAND_V2_SCHEMA,
    CONTROL_COMMAND_V3_SCHEMA,
)
from kqueue.view.store import IngestBatch, StatusStore
from kqueue.worker.cancels import CancelWatch
from tests.support.worker import wait_for
from tests.unit.test_rate_worker import P0, P1, P2, Q, Rig, rig  # noqa: F401  (rig: the fixture)

NOW = 1_700_000_000_000
FIFTY = Rate(50, 1)


# -- the key and the fold ---------------------------------------------------------------------------------
def test_the_limit_key_is_neither_a_queue_nor_a_task_id() -> None:
    assert limit_key("email") == "@limit:email" and queue_of_limit_key("@limit:email") == "email"
    assert queue_of_limit_key("email") is None  # a pause's key
    assert queue_of_limit_key("0f8e9a2c-7d4b-4c1e-9a3f-5b6d7e8f9a0b") is None  # a cancel's key


def test_the_newest_limit_record_is_the_queues_limit() -> None:
    set_50 = limit_command("email", FIFTY, NOW)
    assert set_50 == ControlCommand("limit", "email", NOW, rate="50/s")
    current = limit_after(None, set_50)
    assert current == QueueLimit(FIFTY, NOW)
    assert limit_after(current, limit_command("email", FIFTY, NOW + 5)) == current  # the same again: same since
    assert limit_after(current, limit_command("email", Rate(100, 1), NOW + 5)) == QueueLimit(Rate(100, 1), NOW + 5)
    assert limit_after(current, limit_command("email", None, NOW + 5)) is None  # cleared
    assert limit_after(current, None) is None  # a tombstone clears it too
    assert limit_after(current, ControlCommand("limit", "email", NOW + 5, rate="fast")) == current  # unreadable
    assert limit_after(current, ControlCommand("cancel", "@limit:email", NOW + 5)) == current


def test_a_queues_limit_and_its_pause_live_under_different_keys() -> None:
    folded = QueuePauses()
    assert folded.apply("email", ControlCommand("pause", "email", NOW, reason="incident"))
    version = folded.version
    assert folded.apply(limit_key("email"), limit_command("email", FIFTY, NOW + 1))
    assert folded.version == version  # the pause did not move: the poll loop does not re-apply it
    assert folded.snapshot() == {"email": Paused(NOW, "incident")}
    assert folded.limits.snapshot() == {"email": QueueLimit(FIFTY, NOW + 1)}
    assert not folded.apply(limit_key("email"), limit_command("email", FIFTY, NOW + 2))  # no change
    assert folded.apply(limit_key("email"), None)  # the limit's tombstone: the pause stays
    assert folded.snapshot() == {"email": Paused(NOW, "incident")} and folded.limits.snapshot() == {}


def test_the_control_watch_folds_limits_beside_pauses_and_cancels() -> None:
    watch = CancelWatch("127.0.0.1:1", "_kqueue.control", expiry=3600.0, clock=lambda: NOW)
    watch._apply(b"@limit:email", limit_command("email", FIFTY, NOW).encode())
    watch._apply(b"t-1", ControlCommand("cancel", "t-1", NOW).encode())
    assert watch.pauses.limits.get("email") == QueueLimit(FIFTY, NOW) and watch.pending == {"t-1"}
    assert watch.pauses.snapshot() == {}


def test_the_status_view_keeps_limits_apart_from_pauses(tmp_path: Path) -> None:
    store = StatusStore(f"{tmp_path}/view.db")
    store.write(IngestBatch(pauses=[("email", Paused(NOW, None))], limits=[("email", QueueLimit(FIFTY, NOW))]), NOW)
    store.write(IngestBatch(limits=[("email", QueueLimit(FIFTY, NOW + 9))]), NOW)  # set again: same since
    assert store.limits() == {"email": QueueLimit(FIFTY, NOW)} and store.pauses() == {"email": Paused(NOW, None)}
    store.write(IngestBatch(limits=[("email", None)]), NOW)
    assert store.limits() == {} and store.pauses() == {"email": Paused(NOW, None)}


@pytest.mark.parametrize("text", ["fast", "0/s", "100/sec", "5", ""])
def test_a_bad_rate_is_one_line_naming_it(text: str) -> None:
    with pytest.raises(ValueError, match=rf"^rate {text!r} is not a rate: give N/s") as raised:
        parse_queue_rate(text)
    assert "\n" not in str(raised.value)


def test_off_and_none_clear_and_a_rate_reads_as_given() -> None:
    assert parse_queue_rate(None) is None and parse_queue_rate("off") is None and parse_queue_rate("OFF ") is None
    assert parse_queue_rate("6000/m") == Rate(6000, 60)
    assert QueueLimitState("email", QueueLimit(FIFTY, NOW)).as_json() == {
        "queue": "email", "rate": "50/s", "per_second": 50.0, "since": NOW}


# -- on the wire ------------------------------------------------------------------------------------------
def test_the_older_versions_keep_their_fingerprints() -> None:
    """Taken from the code before `limit` existed: records they wrote must still be found by fingerprint."""
    assert CONTROL_COMMAND_V1_SCHEMA.fingerprint.hex() == "a22ed9fb92805be1"
    assert CONTROL_COMMAND_V2_SCHEMA.fingerprint.hex() == "c02b2627e102d2f0"
    assert CONTROL_COMMAND_V3_SCHEMA.fingerprint.hex() == "86b6d1bc13de75e2"
    assert CONTROL_COMMAND_SCHEMA.fingerprint.hex() not in {"a22ed9fb92805be1", "c02b2627e102d2f0", "86b6d1bc13de75e2"}


def test_a_v3_record_written_before_limits_existed_still_reads() -> None:
    """Hex of a pause with a reason as the code before `limit` wrote it (the third version)."""
    old = bytes.fromhex("c30186b6d1bc13de75e2020a656d61696c80a0abfef962000210696e636964656e74")
    assert ControlCommand.decode(old) == ControlCommand("pause", "email", NOW, reason="incident", rate=None)
    # And a pause with a reason is still written in that version (older workers read it).
    assert ControlCommand("pause", "email", NOW, reason="incident").encode() == old


@pytest.mark.parametrize("command", [limit_command("email", FIFTY, NOW), limit_command("email", None, NOW),
                                     limit_command("email", Rate(20, 3600), NOW)])
def test_a_limit_reads_back_as_written_in_the_new_version(command: ControlCommand) -> None:
    encoded = command.encode()
    assert encoded[2:10] == CONTROL_COMMAND_SCHEMA.fingerprint
    assert ControlCommand.decode(encoded) == command
    older = SchemaStore()
    older.add(CONTROL_COMMAND_V3_SCHEMA)  # a worker before limits: it cannot read one (and skips it)
    from kqueue.core.codec import decode_payload

    with pytest.raises(DecodeError):
        decode_payload(encoded, "avro", CONTROL_COMMAND_V3_SCHEMA, older)


# -- a worker following the limit while it runs -------------------------------------------------------------
def test_a_running_worker_takes_a_limit_on_every_type_at_once_and_lets_go_on_clear(rig: Rig) -> None:  # noqa: F811
    rig.edge.assign(P0, P1, P2)
    with rig.worker() as w:
        rig.task(P0, 1, "free")
        wait_for(lambda: rig.ran == [1], 5, "an unlimited task to run at once")
        limits = w.worker.pauses.limits
        limits.apply(limit_key(Q), limit_command(Q, Rate(60, 3600), NOW))  # 3 of 6 partitions: 30/h here
        wait_for(lambda: "jobs (all types)" in w.worker.state().get("rate_limits", {}), 5, "the retune")
        assert w.worker.state()["rate_limits"]["jobs (all types)"] == "60/h (0.008333/s here)"
        rig.task(P1, 2, "free")
        rig.task(P2, 3, "free")
        wait_for(lambda: w.worker.state()["executor"]["rate_waiting"] == 2, 5, "both to wait for the queue's token")
        assert rig.ran == [1]  # a new bucket starts empty: no burst when a limit arrives
        limits.apply(limit_key(Q), limit_command(Q, None, NOW + 1))
        wait_for(lambda: sorted(rig.ran) == [1, 2, 3], 5, "the clear to let them go")
        assert "jobs (all types)" not in w.worker.state()["rate_limits"]
