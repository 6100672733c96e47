"""Rate waits in the key lanes (core/lanes.py with core/rate_gate.py), on a clock the test moves: a key
whose next task has no token waits out of the ready queues, blocking no other type, key or partition,
its own later tasks behind it; parked keys get tokens in turn across partitions."""

from __future__ import annotations

from dataclasses import dataclass, field

from kqueue.core.lanes import KeyLanes
from kqueue.core.rate_gate import Limits
from kqueue.core.ratelimit import TokenBucket


@dataclass(eq=False)
class Item:
    key: str
    seq: int
    limited: bool
    partition: int = 0
    kind: str = "sync"


@dataclass
class Clock:
    now: float = 100.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Bench:
    rate: float = 10.0  # tokens per second: one every 0.1 s, a capacity of one
    clock: Clock = field(default_factory=Clock)

    def __post_init__(self) -> None:
        self.bucket = TokenBucket(self.rate, self.clock.now)
        self.lanes: KeyLanes[Item] = KeyLanes(lambda item: item.kind, lambda lane: lane[0], None,
                                              limits_of=self.limits_of, clock=self.clock)
        self.seq = 0

    def limits_of(self, item: Item) -> Limits:
        return (self.bucket,) if item.limited else ()

    def push(self, key: str, limited: bool, partition: int = 0, kind: str = "sync") -> Item:
        self.seq += 1
        item = Item(key, self.seq, limited, partition, kind)
        self.lanes.push((partition, key), item)
        return item

    def take(self, max_items: int = 1000) -> list[Item]:
        """Take every ready run and finish it at once; the items in the order taken."""
        runs = self.lanes.take("sync", max_items)
        for lane, _ in runs:
            self.lanes.release(lane)
        return [item for _, items in runs for item in items]

    def tick(self, seconds: float) -> int:
        self.clock.now += seconds
        return self.lanes.unpark()


def test_a_limited_key_without_a_token_waits_and_the_others_run() -> None:
    bench = Bench()
    for n in range(3):
        bench.push(f"l{n}", limited=True)
        bench.push(f"f{n}", limited=False, partition=1)
    taken = bench.take()
    assert [item.key for item in taken] == ["f0", "f1", "f2"]  # the new bucket is empty: no limited one
    assert bench.lanes.parked == 3
    assert bench.lanes.ready_count("sync") == 0  # parked keys are not ready work: no runner wakes for them
    assert bench.lanes.queued == 3


def test_parked_keys_start_one_per_token() -> None:
    bench = Bench()
    for n in range(3):
        bench.push(f"l{n}", limited=True)
    assert bench.take() == []
    assert bench.lanes.next_unpark_at() == 100.1
    assert bench.tick(0.05) == 0
    assert bench.tick(0.05) == 1
    assert [item.key for item in bench.take()] == ["l0"]
    assert bench.tick(0.1) == 1
    assert [item.key for item in bench.take()] == ["l1"]
    assert bench.lanes.parked == 1


def test_a_keys_later_tasks_wait_behind_its_limited_one_and_keep_their_order() -> None:
    bench = Bench()
    first = bench.push("k", limited=True)
    second = bench.push("k", limited=False)
    third = bench.push("k", limited=False)
    other = bench.push("other", limited=False)
    assert bench.take() == [other]
    assert bench.lanes.parked == 3  # the parked head and the two behind it
    bench.tick(0.1)
    assert bench.take() == [first, second, third]  # unlimited ones follow in the run
    assert bench.lanes.parked == 0 and bench.lanes.queued == 0


def test_a_run_stops_at_a_limited_task_without_a_token() -> None:
    bench = Bench(rate=20.0)  # capacity 2
    items = [bench.push("k", limited=True) for _ in range(4)]
    bench.tick(1.0)  # two tokens saved up at most
    assert bench.take() == items[:2]
    assert bench.lanes.parked == 2  # released and parked again for the rest
    bench.tick(0.05)
    assert bench.take() == items[2:3]


def test_a_key_that_becomes_ready_parks_behind_the_keys_already_waiting() -> None:
    bench = Bench()
    bench.push("early", limited=True)
    assert bench.take() == []
    bench.clock.now += 0.1  # a token is there, but "early" waits for it (no tick yet)
    bench.push("late", limited=True)
    assert bench.take() == []
    assert bench.lanes.unpark() == 1
    assert [item.key for item in bench.take()] == ["early"]


def test_parked_keys_get_tokens_in_turn_across_partitions() -> None:
    bench = Bench()
    for n in range(3):
        bench.push(f"a{n}", limited=True, partition=0)
    for n in range(3):
        bench.push(f"b{n}", limited=True, partition=1)
    bench.take()
    order = []
    for _ in range(6):
        bench.tick(0.1)
        order += [item.key for item in bench.take()]
    assert order == ["a0", "b0", "a1", "b1", "a2", "b2"]


def test_a_run_handed_back_before_it_started_keeps_its_head_token_and_returns_the_rest() -> None:
    bench = Bench(rate=30.0)  # capacity 3
    items = [bench.push("k", limited=True) for _ in range(3)]
    bench.tick(1.0)
    runs = bench.lanes.take("sync", 10)
    assert runs == [((0, "k"), items)]
    assert not bench.bucket.available(bench.clock.now)
    bench.lanes.give_back(runs)
    assert bench.bucket.reserved == 1  # the head's, set aside again
    assert bench.lanes.ready_count("sync") == 1
    assert bench.take() == items  # the other two take their tokens back


def test_dropped_tasks_free_their_tokens_and_their_waits() -> None:
    bench = Bench(rate=10.0)
    bench.push("ready", limited=True, partition=0)
    assert bench.tick(0.1) == 1  # its token is set aside as it becomes ready
    assert bench.bucket.reserved == 1 and bench.lanes.ready_count("sync") == 1
    bench.push("waiting", limited=True, partition=1)
    bench.push("waiting", limited=False, partition=1)
    assert bench.lanes.parked_by_group() == {1: 2}
    dropped = bench.lanes.drop(lambda item: True)
    assert len(dropped) == 3
    assert bench.lanes.parked == 0 and bench.lanes.parked_by_group() == {} and bench.lanes.queued == 0
    assert bench.bucket.reserved == 0  # the token set aside for the dropped head is given back
    assert bench.bucket.available(bench.clock.now)


def test_dropping_one_partition_keeps_the_others_waits_in_order() -> None:
    bench = Bench()
    for n in range(2):
        bench.push(f"a{n}", limited=True, partition=0)
        bench.push(f"b{n}", limited=True, partition=1)
    bench.take()
    bench.lanes.drop(lambda item: item.partition == 1)
    assert bench.lanes.parked == 2 and bench.lanes.parked_by_group() == {0: 2}
    bench.tick(0.1)
    bench.tick(0.1)  # one token at a time (capacity 1): one key each
    order = [item.key for item in bench.take()]
    bench.tick(0.1)
    order += [item.key for item in bench.take()]
    assert order == ["a0", "a1"]


def test_an_async_head_becomes_async_ready_work() -> None:
    bench = Bench()
    item = bench.push("k", limited=True, kind="async")
    assert bench.lanes.take("async", 10) == []
    bench.tick(0.1)
    assert bench.lanes.ready_count("async") == 1
    assert bench.lanes.take("async", 10) == [((0, "k"), [item])]


def test_tasks_pushed_behind_a_parked_key_count_as_waiting() -> None:
    bench = Bench()
    bench.push("k", limited=True, partition=3)
    bench.take()
    bench.push("k", limited=False, partition=3)
    assert bench.lanes.parked == 2 and bench.lanes.parked_by_group() == {3: 2}


def test_without_limits_nothing_is_gated() -> None:
    lanes: KeyLanes[Item] = KeyLanes(lambda item: item.kind)
    items = [Item("k", n, limited=True) for n in range(3)]
    for item in items:
        lanes.push("k", item)
    assert lanes.take("sync", 10) == [("k", items)]
    assert lanes.parked == 0 and lanes.next_unpark_at() == float("inf") and lanes.unpark() == 0
