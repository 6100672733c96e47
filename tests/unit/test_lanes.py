"""KeyLanes: per-key FIFO runs, one run at a time per key, sync and async kept apart."""

from __future__ import annotations

import random
from collections.abc import Hashable
from dataclasses import dataclass

import pytest

from kqueue.core.lanes import KeyLanes


@dataclass(frozen=True)
class Item:
    key: Hashable
    seq: int
    kind: str = "sync"
    partition: int = 0


def make() -> KeyLanes[Item]:
    return KeyLanes(lambda item: item.kind)


def push(lanes: KeyLanes[Item], key: Hashable, seq: int, kind: str = "sync", partition: int = 0) -> Item:
    item = Item(key, seq, kind, partition)
    lanes.push(key, item)
    return item


def seqs(items: list[Item]) -> list[int]:
    return [i.seq for i in items]


def test_empty() -> None:
    lanes = make()
    assert lanes.take("sync", 10) == []
    assert lanes.take("async", 10) == []
    assert lanes.queued == 0
    assert lanes.ready_count("sync") == 0
    lanes.release("never-seen")  # harmless
    assert lanes.queued == 0


def test_per_key_fifo_in_one_run() -> None:
    lanes = make()
    for i in range(5):
        push(lanes, "a", i)
    assert lanes.queued == 5
    assert lanes.ready_count("sync") == 1
    runs = lanes.take("sync", 100)
    assert [(k, seqs(items)) for k, items in runs] == [("a", [0, 1, 2, 3, 4])]
    assert lanes.queued == 0
    assert lanes.ready_count("sync") == 0


def test_busy_key_not_handed_out_twice() -> None:
    lanes = make()
    push(lanes, "a", 0)
    (key, first), = lanes.take("sync", 1)
    assert key == "a"
    assert seqs(first) == [0]
    push(lanes, "a", 1)
    push(lanes, "a", 2)
    assert lanes.queued == 2
    assert lanes.ready_count("sync") == 0
    assert lanes.take("sync", 100) == []  # "a" is still running
    lanes.release("a")
    assert lanes.ready_count("sync") == 1
    runs = lanes.take("sync", 100)
    assert [(k, seqs(items)) for k, items in runs] == [("a", [1, 2])]
    assert lanes.take("sync", 100) == []
    lanes.release("a")
    assert lanes.take("sync", 100) == []
    assert lanes.queued == 0


def test_other_keys_run_while_one_is_busy() -> None:
    lanes = make()
    push(lanes, "a", 0)
    push(lanes, "b", 0)
    (key, _), = lanes.take("sync", 1)
    assert key == "a"
    push(lanes, "a", 1)
    runs = lanes.take("sync", 10)
    assert [k for k, _ in runs] == ["b"]


def test_release_of_empty_lane_then_push_is_ready_again() -> None:
    lanes = make()
    push(lanes, "a", 0)
    lanes.take("sync", 1)
    lanes.release("a")
    assert lanes.ready_count("sync") == 0
    push(lanes, "a", 1)
    assert lanes.ready_count("sync") == 1
    (key, items), = lanes.take("sync", 1)
    assert (key, seqs(items)) == ("a", [1])


def test_ready_keys_in_arrival_order() -> None:
    lanes = make()
    for key in ["c", "a", "b"]:
        push(lanes, key, 0)
    push(lanes, "a", 1)
    runs = lanes.take("sync", 100)
    assert [(k, seqs(items)) for k, items in runs] == [("c", [0]), ("a", [0, 1]), ("b", [0])]


def test_kinds_never_mixed_and_order_kept_across_kinds() -> None:
    lanes = make()
    push(lanes, "k", 0, "sync")
    push(lanes, "k", 1, "sync")
    push(lanes, "k", 2, "async")
    push(lanes, "k", 3, "sync")
    assert lanes.ready_count("sync") == 1
    assert lanes.ready_count("async") == 0
    assert lanes.take("async", 10) == []  # the key's head is sync

    (key, items), = lanes.take("sync", 10)
    assert seqs(items) == [0, 1]
    assert lanes.queued == 2
    assert lanes.take("async", 10) == []  # busy until released
    lanes.release(key)
    assert lanes.ready_count("async") == 1
    assert lanes.ready_count("sync") == 0
    assert lanes.take("sync", 10) == []  # seq 3 must wait for the async seq 2

    (key, items), = lanes.take("async", 10)
    assert seqs(items) == [2]
    assert {i.kind for i in items} == {"async"}
    lanes.release(key)
    (key, items), = lanes.take("sync", 10)
    assert (key, seqs(items)) == ("k", [3])
    lanes.release(key)
    assert lanes.queued == 0


def test_take_returns_at_least_one_run() -> None:
    lanes = make()
    for i in range(7):
        push(lanes, "big", i)
    push(lanes, "small", 0)
    runs = lanes.take("sync", 0)
    assert len(runs) == 1
    assert seqs(runs[0][1]) == list(range(7))  # a key's run is never split
    runs = lanes.take("sync", 1)
    assert [(k, seqs(i)) for k, i in runs] == [("small", [0])]


def test_take_about_max_items() -> None:
    lanes = make()
    for key in range(10):
        for i in range(3):
            push(lanes, key, i)
    runs = lanes.take("sync", 7)
    # keeps taking whole runs until max_items is reached: 3 + 3 + 3
    assert [k for k, _ in runs] == [0, 1, 2]
    assert lanes.queued == 21
    assert lanes.ready_count("sync") == 7
    runs = lanes.take("sync", 6)
    assert [k for k, _ in runs] == [3, 4]


def test_drop_revoked_partition() -> None:
    lanes = make()
    kept = []
    for i in range(4):
        push(lanes, ("p0", "a"), i, partition=0)
        kept.append(push(lanes, ("p1", "a"), i, partition=1))
        push(lanes, ("p0", "b"), i, partition=0)
    assert lanes.queued == 12
    # ("p0", "a") is running: its whole queued run (4 items) was taken
    (key, items), = lanes.take("sync", 1)
    assert key == ("p0", "a")
    assert seqs(items) == [0, 1, 2, 3]
    assert lanes.queued == 8
    push(lanes, ("p0", "a"), 4, partition=0)  # arrives while its key is running
    removed = lanes.drop(lambda item: item.partition == 0)
    assert sorted((i.key, i.seq) for i in removed) == [(("p0", "a"), 4)] + [(("p0", "b"), s) for s in range(4)]
    assert {i.partition for i in removed} == {0}
    assert lanes.queued == 4
    runs = lanes.take("sync", 100)
    assert [(k, seqs(i)) for k, i in runs] == [(("p1", "a"), [0, 1, 2, 3])]
    assert runs[0][1] == kept
    lanes.release(("p0", "a"))  # the running run of the revoked partition finishes later
    lanes.release(("p1", "a"))
    assert lanes.take("sync", 100) == []
    assert lanes.queued == 0


def test_drop_nothing_and_everything() -> None:
    lanes = make()
    for i in range(5):
        push(lanes, i % 2, i, "sync" if i % 3 else "async")
    assert lanes.drop(lambda _item: False) == []
    assert lanes.queued == 5
    assert lanes.ready_count("sync") + lanes.ready_count("async") == 2
    removed = lanes.drop(lambda _item: True)
    assert sorted(seqs(removed)) == [0, 1, 2, 3, 4]
    assert lanes.queued == 0
    assert lanes.ready_count("sync") == lanes.ready_count("async") == 0
    assert lanes.take("sync", 10) == lanes.take("async", 10) == []
    push(lanes, 0, 9)
    (key, items), = lanes.take("sync", 10)
    assert (key, seqs(items)) == (0, [9])


def test_drop_all_items_of_a_busy_key() -> None:
    lanes = make()
    push(lanes, "a", 0)
    lanes.take("sync", 1)
    push(lanes, "a", 1)
    push(lanes, "a", 2)
    assert seqs(lanes.drop(lambda item: item.seq >= 1)) == [1, 2]
    assert lanes.queued == 0
    push(lanes, "a", 3)
    assert lanes.take("sync", 10) == []  # still busy
    lanes.release("a")
    (key, items), = lanes.take("sync", 10)
    assert (key, seqs(items)) == ("a", [3])


def test_drop_part_of_a_lane_keeps_the_rest_ready() -> None:
    lanes = make()
    push(lanes, "a", 0)
    push(lanes, "a", 1)
    push(lanes, "a", 2)
    assert seqs(lanes.drop(lambda item: item.seq == 0)) == [0]
    assert lanes.queued == 2
    assert lanes.ready_count("sync") == 1
    (key, items), = lanes.take("sync", 10)
    assert (key, seqs(items)) == ("a", [1, 2])


def test_drop_head_of_other_kind_leaves_the_key_schedulable() -> None:
    # Removing a ready key's head item can change which kind the key's next run is. The remaining
    # items must still be handed out: otherwise the key is neither busy nor ready and stalls forever.
    lanes = make()
    push(lanes, "k", 0, "sync")
    push(lanes, "k", 1, "async")
    push(lanes, "k", 2, "async")
    assert lanes.ready_count("sync") == 1
    assert seqs(lanes.drop(lambda item: item.seq == 0)) == [0]
    assert lanes.queued == 2
    assert lanes.ready_count("async") == 1
    runs = lanes.take("async", 10)
    assert [(k, seqs(i)) for k, i in runs] == [("k", [1, 2])]


def test_given_back_runs_are_first_in_line_and_keep_their_order() -> None:
    lanes = make()
    for key in ("a", "b", "c"):
        push(lanes, key, 0)
        push(lanes, key, 1)
    push(lanes, "d", 0)
    runs = lanes.take("sync", 4)  # a, b
    assert [k for k, _ in runs] == ["a", "b"]
    push(lanes, "b", 2)  # arrives while b is out
    lanes.give_back(runs)
    assert lanes.queued == 8
    assert lanes.ready_count("sync") == 4
    runs = lanes.take("sync", 100)
    assert [(k, seqs(items)) for k, items in runs] == [
        ("a", [0, 1]), ("b", [0, 1, 2]), ("c", [0, 1]), ("d", [0])]
    assert lanes.queued == 0


def test_a_given_back_run_waits_for_nothing_of_its_own_key() -> None:
    lanes = make()
    push(lanes, "k", 0, "async")
    push(lanes, "k", 1, "sync")
    runs = lanes.take("async", 10)
    lanes.give_back(runs)
    assert lanes.take("sync", 10) == []  # the key's head is the async task again
    (key, items), = lanes.take("async", 10)
    assert (key, seqs(items)) == ("k", [0])
    lanes.release(key)
    (key, items), = lanes.take("sync", 10)
    assert (key, seqs(items)) == ("k", [1])


def test_a_given_back_run_can_be_dropped() -> None:
    lanes = make()
    push(lanes, "k", 0, partition=3)
    lanes.give_back(lanes.take("sync", 10))
    assert [i.seq for i in lanes.drop(lambda item: item.partition == 3)] == [0]
    assert lanes.queued == 0
    assert lanes.take("sync", 10) == []


# -- randomized simulation ------------------------------------------------------------------------

RUNNER_KINDS = ("sync", "sync", "async")


@pytest.mark.parametrize("seed", range(30))
def test_random_simulation(seed: int) -> None:
    rng = random.Random(seed)
    lanes = make()
    keys = [f"key-{i}" for i in range(rng.choice([3, 12, 40]))]
    pushed: dict[Hashable, list[int]] = {k: [] for k in keys}
    executed: dict[Hashable, list[int]] = {k: [] for k in keys}
    running: dict[Hashable, int] = {}  # key -> runner index
    # each runner holds a list of (key, remaining items) it works through one item at a time
    holding: list[list[tuple[Hashable, list[Item]]]] = [[] for _ in RUNNER_KINDS]
    seq = 0
    queued = 0
    total_pushed = 0

    def step_runner(index: int) -> None:
        nonlocal queued
        kind = RUNNER_KINDS[index]
        work = holding[index]
        if not work:
            ready_before = lanes.ready_count(kind)
            limit = rng.choice([0, 1, 2, 5, 50])
            runs = lanes.take(kind, limit)
            assert bool(runs) == (ready_before > 0)
            if runs:
                sizes = [len(items) for _, items in runs]
                assert sum(sizes[:-1]) < max(limit, 1)  # stops once about max_items are taken
            for key, items in runs:
                assert items, "a run is never empty"
                assert key not in running, f"{key} handed out while running on runner {running.get(key)}"
                assert all(item.kind == kind for item in items), "a run mixes kinds"
                assert all(item.key == key for item in items)
                running[key] = index
                queued -= len(items)
                work.append((key, list(items)))
            return
        key, items = work[0]
        item = items.pop(0)
        assert running[key] == index
        executed[key].append(item.seq)
        if not items:
            work.pop(0)
            del running[key]
            lanes.release(key)

    def give_back(index: int) -> None:
        """The executor's ticker: the runs a runner holds behind its current one go back."""
        nonlocal queued
        work = holding[index]
        back, work[1:] = work[1:], []
        for key, items in back:
            assert running.pop(key) == index
            queued += len(items)
        lanes.give_back(back)

    for _ in range(3000):
        if rng.random() < 0.04:
            give_back(rng.randrange(len(RUNNER_KINDS)))
        elif rng.random() < 0.35:
            key = rng.choice(keys)
            kind = "async" if rng.random() < 0.3 else "sync"
            seq += 1
            push(lanes, key, seq, kind)
            pushed[key].append(seq)
            queued += 1
            total_pushed += 1
        else:
            step_runner(rng.randrange(len(RUNNER_KINDS)))
        assert lanes.queued == queued
        for key in keys:
            # per-key execution is always a prefix of the push order
            assert executed[key] == pushed[key][: len(executed[key])]

    # drain: every runner keeps going until nothing is left anywhere
    for _ in range(100_000):
        if lanes.queued == 0 and not any(holding):
            break
        for index in range(len(RUNNER_KINDS)):
            step_runner(index)
    assert lanes.queued == 0
    assert not running
    assert executed == pushed
    assert sum(len(v) for v in executed.values()) == total_pushed > 0


@pytest.mark.parametrize("seed", range(15))
def test_random_simulation_with_revoked_partitions(seed: int) -> None:
    # Like the worker: a lane is (partition, key), and a revocation drops whole partitions.
    rng = random.Random(1000 + seed)
    lanes = make()
    live: set[int] = {0, 1, 2, 3}
    pushed: dict[Hashable, list[int]] = {}
    executed: dict[Hashable, list[int]] = {}
    dropped: dict[Hashable, list[int]] = {}
    running: set[Hashable] = set()
    holding: list[list[tuple[Hashable, list[Item]]]] = [[] for _ in RUNNER_KINDS]
    seq = 0

    for _ in range(2500):
        action = rng.random()
        if action < 0.35:
            partition = rng.choice(sorted(live))
            lane = (partition, f"k{rng.randrange(6)}")
            seq += 1
            push(lanes, lane, seq, rng.choice(["sync", "sync", "async"]), partition)
            pushed.setdefault(lane, []).append(seq)
        elif action < 0.38:
            lost = rng.choice(sorted(live))
            before = lanes.queued
            removed = lanes.drop(lambda item, lost=lost: item.partition == lost)
            assert all(item.partition == lost for item in removed)
            assert lanes.queued == before - len(removed)
            for item in removed:
                dropped.setdefault(item.key, []).append(item.seq)
            live.discard(lost)
            live.add(max(live | {lost}) + 1)  # a new partition is assigned
        else:
            index = rng.randrange(len(RUNNER_KINDS))
            kind, work = RUNNER_KINDS[index], holding[index]
            if not work:
                for key, items in lanes.take(kind, rng.choice([1, 3, 20])):
                    assert key not in running
                    assert all(item.kind == kind for item in items)
                    running.add(key)
                    work.append((key, list(items)))
            else:
                key, items = work[0]
                executed.setdefault(key, []).append(items.pop(0).seq)
                if not items:
                    work.pop(0)
                    running.discard(key)
                    lanes.release(key)

    for _ in range(100_000):
        if lanes.queued == 0 and not any(holding):
            break
        for index, kind in enumerate(RUNNER_KINDS):
            work = holding[index]
            if not work:
                for key, items in lanes.take(kind, 5):
                    assert key not in running
                    running.add(key)
                    work.append((key, list(items)))
            else:
                key, items = work[0]
                executed.setdefault(key, []).append(items.pop(0).seq)
                if not items:
                    work.pop(0)
                    running.discard(key)
                    lanes.release(key)
    assert lanes.queued == 0
    for lane, order in pushed.items():
        done, gone = executed.get(lane, []), dropped.get(lane, [])
        # what ran is a prefix of the push order, and everything else was dropped, in order
        assert done + gone == order


def test_groups_take_turns_so_one_backlog_does_not_crowd_out_another() -> None:
    """Keys of partition 0 were all queued first: taken in turn with partition 1's, a key each."""
    from kqueue.core.lanes import KeyLanes

    lanes: KeyLanes[tuple[int, int]] = KeyLanes(lambda item: "sync", lambda key: key[0])  # type: ignore[index]
    for n in range(4):
        lanes.push((0, n), (0, n))
    for n in range(2):
        lanes.push((1, n), (1, n))
    taken = [key for key, _ in lanes.take("sync", 6)]
    assert taken == [(0, 0), (1, 0), (0, 1), (1, 1), (0, 2), (0, 3)]
