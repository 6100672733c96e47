"""Ordered retries' pure parts (core/ordering.py) and the executor lanes' hold (core/lanes.py)."""

from __future__ import annotations

import pytest

from kqueue.core.lanes import KeyLanes
from kqueue.core.ordering import (
    PARK_VALUE,
    Admit,
    BlockFold,
    KeyBlock,
    admit,
    block_key,
    encode_block,
    park_key,
)


def test_an_unblocked_key_runs() -> None:
    assert admit(None, "q/0/5") is Admit.RUN


def test_the_blocker_runs_and_the_others_park_while_it_waits_in_a_tier() -> None:
    block = KeyBlock("q/0/5")
    assert admit(block, "q/0/5") is Admit.RUN
    assert admit(block, "q/0/9") is Admit.PARK


def test_behind_a_blocker_already_read_with_nothing_parked_a_task_queues() -> None:
    block = KeyBlock("q/0/5", admitted=True)
    assert admit(block, "q/0/9") is Admit.RUN
    block.park(7)
    assert admit(block, "q/0/9") is Admit.PARK  # something older waits: it must not overtake


def test_a_blocker_that_follows_a_dead_letter_goes_to_the_dlq() -> None:
    assert admit(KeyBlock("q/0/5", follow=True), "q/0/5") is Admit.FOLLOW


def test_parking_keeps_offsets_in_order_and_once() -> None:
    block = KeyBlock("q/0/1")
    for offset in (9, 4, 9, 6):
        block.park(offset)
    assert block.parked == [4, 6, 9]


def test_the_fold_reads_blocks_back_newest_record_winning() -> None:
    fold = BlockFold()
    key = b"\x00id/1"
    fold.add(block_key("q", key), encode_block(KeyBlock("q/0/1")))
    for offset in (3, 4, 5):
        fold.add(park_key("q", key, offset), PARK_VALUE)
    fold.add(park_key("q", key, 3), None)  # released: its copy is the blocker now
    fold.add(block_key("q", key), encode_block(KeyBlock("q/0/3", follow=True)))
    fold.add(block_key("q", b"ended"), encode_block(KeyBlock("q/1/1")))
    fold.add(block_key("q", b"ended"), None)
    blocks, orphans = fold.blocks()
    assert blocks == {("q", key): KeyBlock("q/0/3", [4, 5], follow=True)}
    assert orphans == []


def test_parked_tasks_without_their_blocker_stay_blocked_and_are_reported() -> None:
    fold = BlockFold()
    fold.add(park_key("q", b"k", 8), PARK_VALUE)
    blocks, orphans = fold.blocks()
    assert orphans == [("q", b"k")]
    assert admit(blocks[("q", b"k")], "q/0/20") is Admit.PARK


def test_a_foreign_key_is_refused() -> None:
    with pytest.raises(ValueError, match="not an ordering record"):
        BlockFold().add("idempotency\x00t\x00k", b"{}")


def test_a_held_key_starts_nothing_until_released_or_taken() -> None:
    lanes: KeyLanes[str] = KeyLanes(lambda _item: "sync")
    for item in ("a1", "a2", "a3"):
        lanes.push("a", item)
    lanes.push("b", "b1")
    runs = lanes.take("sync", 10)
    assert sorted(key for key, _ in runs) == ["a", "b"]
    a_items = dict(runs)["a"]
    assert a_items == ["a1", "a2", "a3"]
    lanes.release("b")
    lanes.hold("a", a_items[1:])  # a1 failed: a2 and a3 never started
    lanes.push("a", "a4")
    assert lanes.take("sync", 10) == []
    assert lanes.take_held("a") == ["a2", "a3", "a4"]
    assert lanes.queued == 0
    lanes.push("a", "a5")
    assert lanes.take("sync", 10) == [("a", ["a5"])]


def test_an_unheld_key_runs_its_items_in_order() -> None:
    lanes: KeyLanes[str] = KeyLanes(lambda _item: "sync")
    lanes.push("a", "a1")
    ((key, _items),) = lanes.take("sync", 1)
    lanes.hold(key, [])
    lanes.push("a", "a2")
    lanes.push("a", "a3")
    assert lanes.take("sync", 10) == []
    lanes.release("a")
    assert lanes.take("sync", 10) == [("a", ["a2", "a3"])]


def test_a_whole_queue_can_order_its_retries_and_a_bad_value_is_refused_at_import() -> None:
    import kqueue

    app = kqueue.App("o", "127.0.0.1:1")

    @app.task(queue="a")
    def before(payload: object) -> None: ...

    app.order_retries("a")

    @app.task(queue="a")
    def after(payload: object) -> None: ...

    @app.task(queue="a", ordered="follow")
    def own(payload: object) -> None: ...

    @app.task(queue="b")
    def other(payload: object) -> None: ...

    assert (before.ordered, after.ordered, own.ordered, other.ordered) == (True, True, "follow", False)
    for bad in ("yes", 1, None):
        with pytest.raises(ValueError, match="ordered must be True, False or \"follow\""):
            app.task(queue="c", ordered=bad)  # type: ignore[arg-type]


def test_the_summary_line_counts_parked_tasks_only_when_there_were_some() -> None:
    from kqueue.core.records import Settlement
    from kqueue.observe.summary import Tally, summary_line

    tally = Tally()
    tally.count(Settlement.COMPLETED)
    assert "parked" not in summary_line(tally, 10.0, None)[0]
    tally.count(Settlement.PARKED)
    text, fields = summary_line(tally, 10.0, None)
    assert "1 parked behind a retry" in text and fields["parked"] == 1
