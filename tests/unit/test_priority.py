"""Priorities, pure: the 0-9 mapping onto the lanes, `--weights` parsing, the weighted pick of the
next lane, and the share a lower lane keeps while a higher one waits."""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

import pytest

import kqueue
from kqueue.core.lane_pick import LanePicker
from kqueue.core.lanes import KeyLanes
from kqueue.core.priority import (
    DEFAULT_WEIGHTS,
    STRICT,
    LaneWeights,
    held_share,
    lane_of,
    lane_ranks,
    parse_weights,
    partition_rank,
    priority_turn,
)
from kqueue.sdk.middleware import EnqueueEvent

# -- priorities onto lanes -------------------------------------------------------------------------


@pytest.mark.parametrize(("priority", "lane"), [
    ("high", "high"), ("normal", "normal"), ("low", "low"),
    (9, "high"), (8, "high"), (7, "high"), (6, "normal"), (5, "normal"), (4, "normal"), (3, "normal"),
    (2, "low"), (1, "low"), (0, "low"), ("9", "high"), ("0", "low"), (" 5 ", "normal"),
])
def test_priorities_map_onto_three_lanes_higher_numbers_more_urgent(priority: str | int, lane: str) -> None:
    assert lane_of(priority) == lane


@pytest.mark.parametrize("priority", [10, -1, "10", "07", "urgent", "HIGH", "", True, 3.5, None, "٣"])
def test_an_unknown_priority_is_refused_naming_it(priority: Any) -> None:
    with pytest.raises(ValueError, match="unknown priority") as info:
        lane_of(priority)
    assert repr(priority) in str(info.value)
    assert "\n" not in str(info.value)


class _Stop(Exception):
    """Raised by the test's enqueue hook: the enqueue stops before it reaches Kafka."""


def test_the_sdk_sends_an_integer_priority_to_its_lane() -> None:
    topics: list[str] = []

    class Capture(kqueue.Middleware):
        def on_enqueue(self, event: EnqueueEvent) -> None:
            topics.append(event.topic)
            headers = dict(event.headers)
            topics.append(headers["kq-priority"].decode())
            raise _Stop

    app = kqueue.App("prio", "127.0.0.1:1", middleware=[Capture()])  # never contacted
    task = app.task(queue="mail", name="send")(lambda payload: None)
    for priority in (9, 5, 0, "high"):
        with pytest.raises(_Stop):
            task.enqueue({}, priority=priority)
    assert topics == ["mail.high", "high", "mail", "normal", "mail.low", "low", "mail.high", "high"]
    with pytest.raises(ValueError, match="unknown priority 12"):
        task.enqueue({}, priority=12)


# -- --weights ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "weights"), [
    ("high=6,normal=3,low=1", DEFAULT_WEIGHTS),
    ("strict", STRICT),
    (" Strict ", STRICT),
    ("high=10", LaneWeights((10, 3, 1))),  # lanes left out keep their default
    ("low=2, high = 8", LaneWeights((8, 3, 2))),
    ("high=1,normal=1,low=1", LaneWeights((1, 1, 1))),
    ("low=1000", LaneWeights((6, 3, 1000))),
])
def test_weights_parse(text: str, weights: LaneWeights) -> None:
    assert parse_weights(text) == weights
    assert parse_weights(weights.describe()) == weights  # what --processes hands its children


@pytest.mark.parametrize(("text", "says"), [
    ("high=x", "the weight of high must be a whole number from 1 to 1000, not 'x'"),
    ("medium=3", "'medium=3' is not lane=weight"),
    ("high=0,normal=0,low=0", "not '0'"),
    ("high=0", "not '0'"),
    ("low=-1", "not '-1'"),
    ("low=1001", "not '1001'"),
    ("high=1.5", "not '1.5'"),
    ("high=6,high=3", "high is given twice"),
    ("high", "'high' is not lane=weight"),
    ("high=6,", "'' is not lane=weight"),
    ("", "is empty"),
    ("fair", "'fair' is not lane=weight"),
])
def test_bad_weights_are_one_line_naming_the_value(text: str, says: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_weights(text)
    message = str(info.value)
    assert message.startswith(f"--weights {text!r}")
    assert says in message
    assert "\n" not in message


def test_lane_ranks_go_by_topic_not_by_name() -> None:
    ranks = lane_ranks(["mail", "x.high"], "p.")
    assert ranks == {"p.mail.high": 0, "p.mail": 1, "p.mail.low": 2, "p.x.high.high": 0, "p.x.high": 1,
                     "p.x.high.low": 2}
    rank = partition_rank(ranks)
    assert [rank(("p.x.high", 0)), rank(("p.mail.low", 3)), rank(("p.mail.delay.5s", 0)), rank("x")] == [1, 2, 1, 1]


# -- the pick ---------------------------------------------------------------------------------------


def picks(picker: LanePicker, ready: list[int], n: int, items: tuple[int, int, int] = (1, 1, 1)) -> Counter[int]:
    """Lanes served in `n` picks while `ready` stays as it is; each pick serves `items[rank]` items."""
    served: Counter[int] = Counter()
    for _ in range(n):
        rank = picker.pick(ready)
        picker.charge(rank, items[rank])
        served[rank] += items[rank]
    return served


def test_lanes_with_ready_work_are_served_by_their_weights() -> None:
    assert picks(LanePicker(DEFAULT_WEIGHTS), [5, 5, 5], 20) == {0: 12, 1: 6, 2: 2}
    assert picks(LanePicker(DEFAULT_WEIGHTS), [5, 0, 5], 70) == {0: 60, 2: 10}
    assert picks(LanePicker(LaneWeights((1, 1, 1))), [1, 1, 1], 30) == {0: 10, 1: 10, 2: 10}


def test_the_weights_count_items_not_runs() -> None:
    """Low's runs are ten tasks each (a key with ten queued), high's one: still six high tasks per low one."""
    served = picks(LanePicker(DEFAULT_WEIGHTS), [1, 0, 1], 610, items=(1, 1, 10))
    assert served[0] / served[2] == pytest.approx(6, rel=0.05)


def test_a_lane_that_had_nothing_ready_banks_no_credit() -> None:
    picker = LanePicker(DEFAULT_WEIGHTS)
    picks(picker, [1, 0, 0], 1000)  # high alone for a while
    picker.arrive(2)
    assert picks(picker, [1, 0, 1], 14) == {0: 12, 2: 2}  # low gets its share, not a burst


def test_strict_serves_the_highest_lane_with_ready_work() -> None:
    picker = LanePicker(STRICT)
    assert picks(picker, [1, 1, 1], 50) == {0: 50}
    assert picks(picker, [0, 1, 1], 50) == {1: 50}
    assert picks(picker, [0, 0, 1], 5) == {2: 5}


# -- KeyLanes with lanes -------------------------------------------------------------------------


@dataclass(frozen=True)
class Item:
    topic: str
    partition: int
    key: str
    seq: int
    kind: str = "sync"

    @property
    def lane(self) -> Hashable:
        return (self.topic, self.partition, self.key)


RANKS = {"q.high": 0, "q": 1, "q.low": 2}


def key_lanes(weights: LaneWeights = DEFAULT_WEIGHTS) -> KeyLanes[Item]:
    return KeyLanes(lambda item: item.kind, lambda lane: lane[:2] if isinstance(lane, tuple) else lane,
                    partition_rank(RANKS), weights)


def fill(lanes: KeyLanes[Item], topic: str, partitions: int, keys: int, per_key: int) -> None:
    for seq in range(per_key):
        for p in range(partitions):
            for k in range(keys):
                item = Item(topic, p, f"{topic}-k{k}", seq)
                lanes.push(item.lane, item)


def drain(lanes: KeyLanes[Item], take: int = 1) -> list[Item]:
    done: list[Item] = []
    while True:
        runs = lanes.take("sync", take)
        if not runs:
            return done
        for key, items in runs:
            done.extend(items)
            lanes.release(key)


def test_keylanes_take_the_lanes_by_weight_and_keep_each_keys_order() -> None:
    lanes = key_lanes()
    fill(lanes, "q.low", 2, 20, 3)  # 120 low tasks: 40 keys, three each
    fill(lanes, "q.high", 2, 60, 1)  # 120 high tasks: a key each
    assert lanes.ready_by_rank() == [120, 0, 40]  # keys ready to start
    done = drain(lanes)
    first = Counter(item.topic for item in done[:140])
    assert first["q.high"] >= 117  # about one low in seven while high has work (low's runs are 3 each)
    for key in {item.lane for item in done}:  # each key in its order
        assert [i.seq for i in done if i.lane == key] == sorted(i.seq for i in done if i.lane == key)
    assert lanes.ready_by_rank() == [0, 0, 0]


def test_partitions_of_one_lane_still_take_turns() -> None:
    lanes = key_lanes()
    fill(lanes, "q.high", 1, 1, 50)  # one key of partition 0, fifty tasks
    fill(lanes, "q.low", 3, 10, 1)
    order = [(item.topic, item.partition) for item in drain(lanes)]
    lows = [p for t, p in order if t == "q.low"]
    assert lows[:6] == [0, 1, 2, 0, 1, 2]


def test_strict_keylanes_run_low_only_when_high_has_nothing_ready() -> None:
    lanes = key_lanes(STRICT)
    fill(lanes, "q.low", 1, 5, 1)
    fill(lanes, "q.high", 1, 5, 1)
    fill(lanes, "q", 1, 5, 1)
    assert [item.topic for item in drain(lanes)] == ["q.high"] * 5 + ["q"] * 5 + ["q.low"] * 5


def test_ready_keys_by_lane_follow_take_give_back_release_and_drop() -> None:
    lanes = key_lanes()
    fill(lanes, "q.high", 1, 4, 2)
    fill(lanes, "q.low", 1, 4, 2)
    assert lanes.ready_by_rank() == [4, 0, 4]
    runs = lanes.take("sync", 100)
    assert lanes.ready_by_rank() == [0, 0, 0]  # every key taken: its later items wait behind it
    lanes.give_back(runs)
    assert lanes.ready_by_rank() == [4, 0, 4]
    lanes.drop(lambda item: item.topic == "q.low")
    assert lanes.ready_by_rank() == [4, 0, 0]
    [(key, _items)] = lanes.take("sync", 1)
    assert lanes.ready_by_rank() == [3, 0, 0]
    item = Item("q.high", 0, "q.high-k0", 2)
    lanes.push(item.lane, item)  # arrives while its key runs: not ready
    lanes.release(key)
    assert lanes.ready_by_rank() == [4, 0, 0]  # ready once the key's run is over
    assert len(drain(lanes)) == 7
    assert lanes.ready_by_rank() == [0, 0, 0]


# -- a lower lane's share while a higher one waits ----------------------------------------------


def test_a_lower_lane_keeps_its_weights_part_of_the_bound_while_a_higher_one_waits() -> None:
    limit = 2000
    assert held_share(DEFAULT_WEIGHTS, 2, [True, False, False], limit) == 2000 * 1 // 7
    assert held_share(DEFAULT_WEIGHTS, 2, [True, True, False], limit) == 2000 * 1 // 10
    assert held_share(DEFAULT_WEIGHTS, 1, [True, False, True], limit) == 2000 * 3 // 9
    assert held_share(DEFAULT_WEIGHTS, 2, [False, False, True], limit) is None  # nothing above waits
    assert held_share(DEFAULT_WEIGHTS, 0, [True, True, True], limit) is None  # high is never held
    assert held_share(STRICT, 2, [False, True, False], limit) == 0
    assert held_share(LaneWeights((1000, 3, 1)), 2, [True, False, False], 10) == 1  # never 0 unless strict


@pytest.mark.parametrize(("unsettled", "share", "paused", "turn"), [
    (285, 285, False, True),  # at its share: pause
    (200, 285, True, None),  # between half and the share: as it is
    (200, 285, False, None),
    (142, 285, True, False),  # at half: resume
    (5000, None, True, False),  # no higher lane waits: resume whatever it holds
    (5000, None, False, None),
    (0, 0, False, True),  # strict: paused while a higher lane waits, even holding nothing
    (0, 0, True, None),
])
def test_when_a_lower_lane_pauses_and_resumes(unsettled: int, share: int | None, paused: bool,
                                              turn: bool | None) -> None:
    assert priority_turn(unsettled, share, paused) is turn
