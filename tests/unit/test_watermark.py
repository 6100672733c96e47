"""PartitionWatermark: the committable offset of one partition."""

from __future__ import annotations

import random

import pytest

from kqueue.core.watermark import PartitionWatermark


def tracked(*offsets: int) -> PartitionWatermark:
    w = PartitionWatermark()
    for offset in offsets:
        w.track(offset)
    return w


def test_nothing_tracked() -> None:
    w = PartitionWatermark()
    assert w.position() is None
    assert w.outstanding == 0


def test_tracked_but_unsettled_is_the_oldest() -> None:
    w = tracked(5, 6, 7)
    assert w.position() == 5
    assert w.outstanding == 3


def test_in_order_settles() -> None:
    w = tracked(0, 1, 2)
    w.settle(0)
    assert w.position() == 1
    w.settle(1)
    assert w.position() == 2
    w.settle(2)
    assert w.position() == 3
    assert w.outstanding == 0


def test_out_of_order_settles_hold_the_position() -> None:
    w = tracked(0, 1, 2, 3)
    w.settle(3)
    w.settle(1)
    assert w.position() == 0
    assert w.outstanding == 2
    w.settle(2)
    assert w.position() == 0
    w.settle(0)
    assert w.position() == 4
    assert w.outstanding == 0


def test_gaps_in_offsets() -> None:
    w = tracked(10, 12, 15)
    assert w.position() == 10
    w.settle(10)
    assert w.position() == 12  # 11 was never tracked (e.g. a transaction marker)
    w.settle(15)
    assert w.position() == 12
    assert w.outstanding == 1
    w.settle(12)
    assert w.position() == 16  # one past the newest settled offset
    assert w.outstanding == 0


def test_position_is_stable_when_asked_repeatedly() -> None:
    w = tracked(10, 12, 15)
    w.settle(10)
    w.settle(12)
    assert [w.position() for _ in range(3)] == [15, 15, 15]
    w.settle(15)
    assert [w.position() for _ in range(3)] == [16, 16, 16]


def test_track_after_everything_settled() -> None:
    w = tracked(3)
    w.settle(3)
    assert w.position() == 4
    w.track(9)
    assert w.position() == 9
    assert w.outstanding == 1
    w.settle(9)
    assert w.position() == 10


def test_track_next_offset_after_position() -> None:
    w = tracked(3)
    w.settle(3)
    assert w.position() == 4
    w.track(4)
    assert w.position() == 4


@pytest.mark.parametrize("offset", [7, 6, 0])
def test_track_out_of_order_raises(offset: int) -> None:
    w = tracked(5, 7)
    with pytest.raises(ValueError, match="out of order"):
        w.track(offset)
    # the failed track changed nothing
    assert w.outstanding == 2
    assert w.position() == 5


def test_track_below_settled_position_raises() -> None:
    w = tracked(5, 7)
    w.settle(5)
    w.settle(7)
    assert w.position() == 8
    with pytest.raises(ValueError, match="below the settled position 8"):
        w.track(6)
    with pytest.raises(ValueError):
        w.track(7)
    assert w.position() == 8


def test_outstanding_counts() -> None:
    w = tracked(*range(100, 110))
    assert w.outstanding == 10
    for i, offset in enumerate([105, 109, 100, 101]):
        w.settle(offset)
        assert w.outstanding == 10 - i - 1
    assert w.position() == 102
    assert w.outstanding == 6
    w.settle(105)  # settling twice before it is passed is harmless
    assert w.outstanding == 6


class Reference:
    """The obvious model: remember everything."""

    def __init__(self) -> None:
        self.tracked: list[int] = []
        self.settled: set[int] = set()

    def position(self) -> int | None:
        unsettled = [o for o in self.tracked if o not in self.settled]
        if unsettled:
            return min(unsettled)
        if self.settled:
            return max(self.settled) + 1
        return None

    @property
    def outstanding(self) -> int:
        return len(self.tracked) - len(self.settled)


@pytest.mark.parametrize("seed", range(40))
def test_matches_reference_model(seed: int) -> None:
    rng = random.Random(seed)
    w, ref = PartitionWatermark(), Reference()
    next_offset = rng.randrange(0, 1000)
    unsettled: list[int] = []
    for _ in range(1500):
        action = rng.random()
        if action < 0.4:
            next_offset += rng.choice([1, 1, 1, 2, 3, 10])  # occasional gaps
            w.track(next_offset)
            ref.tracked.append(next_offset)
            unsettled.append(next_offset)
        elif action < 0.8 and unsettled:
            # mostly the oldest few first, like a worker pool, sometimes anything
            index = rng.randrange(min(len(unsettled), rng.choice([1, 3, 50])))
            offset = unsettled.pop(index)
            w.settle(offset)
            ref.settled.add(offset)
        elif action < 0.85 and ref.tracked:
            # tracking an offset that is not newer must fail and change nothing
            stale = rng.randrange(ref.tracked[0] - 5, ref.tracked[-1] + 1)
            with pytest.raises(ValueError):
                w.track(stale)
        else:
            assert w.position() == ref.position()
        assert w.outstanding == ref.outstanding
    while unsettled:
        w.settle(unsettled.pop(rng.randrange(len(unsettled))))
    assert w.position() == (ref.tracked[-1] + 1 if ref.tracked else None)
    assert w.outstanding == 0


def test_position_never_goes_backwards() -> None:
    rng = random.Random(7)
    w = PartitionWatermark()
    offsets = list(range(0, 3000, 2))
    for offset in offsets:
        w.track(offset)
    order = offsets[:]
    rng.shuffle(order)
    last = -1
    for offset in order:
        w.settle(offset)
        position = w.position()
        assert position is not None
        assert position >= last
        last = position
    assert last == offsets[-1] + 1
