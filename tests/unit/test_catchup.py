"""The shared wait of status lookups that miss (api/catchup.py), driven on an event loop with a
scripted Kafka and view: one question to Kafka for many waiters, a late arrival waits for ends taken
after it came, timeouts and floods are answered at once, failures reach every waiter."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from kqueue.api.catchup import CatchUp, Offsets, ViewBehind, caught_up

TP0, TP1 = ("q", 0), ("q", 1)


class Script:
    """Kafka's ends (changeable, optionally slow to answer) and the view's read positions."""

    def __init__(self, ends: Offsets, read: Offsets, answer_after: float = 0.0) -> None:
        self.ends, self.read = dict(ends), dict(read)
        self.answer_after = answer_after
        self.asked = 0
        self.reads = 0
        self.lock = threading.Lock()
        self.fail: Exception | None = None

    def topic_ends(self) -> Offsets:  # called on a thread, like the admin client
        with self.lock:
            self.asked += 1
            ends = dict(self.ends)  # where they end when asked; the answer takes its time
        time.sleep(self.answer_after)
        if self.fail is not None:
            raise self.fail
        return ends

    def read_positions(self) -> Offsets:
        self.reads += 1
        return dict(self.read)


def test_caught_up_ignores_empty_partitions_and_wants_every_other_read_to_its_end() -> None:
    assert caught_up({TP0: 5}, {TP0: 5, TP1: 0})
    assert not caught_up({TP0: 5}, {TP0: 5, TP1: 1})
    assert caught_up({TP0: 7, TP1: 2}, {TP0: 5, TP1: 2})


def test_many_waiters_share_one_question_and_one_poll() -> None:
    script = Script({TP0: 10, TP1: 4}, {TP0: 3, TP1: 4}, answer_after=0.05)
    catch_up = CatchUp(script.topic_ends, script.read_positions, max_wait=5, poll=0.01)

    async def scenario() -> float:
        started = time.monotonic()
        waiters = [asyncio.create_task(catch_up.wait()) for _ in range(200)]
        await asyncio.sleep(0.3)
        assert not any(w.done() for w in waiters) and catch_up.waiting == 200
        script.read[TP0] = 10  # the view reads on to the end
        await asyncio.wait_for(asyncio.gather(*waiters), timeout=2)
        return time.monotonic() - started

    took = asyncio.run(scenario())
    # The first arrival asks; the other 199 came after it asked, so they share the next question.
    assert script.asked == 2
    # One read of the view per poll for all 200 (and one look per question), never one per waiter.
    assert script.reads <= took / 0.01 + 5
    assert script.reads < 200
    assert catch_up.waiting == 0


def test_a_waiter_that_arrives_while_kafka_is_asked_waits_for_ends_taken_after_it_came() -> None:
    script = Script({TP0: 5}, {TP0: 5}, answer_after=0.2)
    catch_up = CatchUp(script.topic_ends, script.read_positions, max_wait=5, poll=0.01)

    async def scenario() -> None:
        early = asyncio.create_task(catch_up.wait())
        await asyncio.sleep(0.05)  # the first question is in flight, its ends taken before...
        script.ends[TP0] = 9  # ...this record was written: the late waiter must not trust them
        late = asyncio.create_task(catch_up.wait())
        await asyncio.wait_for(early, timeout=2)  # the view is at 5: enough for the early one
        await asyncio.sleep(0.4)
        assert not late.done()  # the second question said 9
        script.read[TP0] = 9
        await asyncio.wait_for(late, timeout=2)

    asyncio.run(scenario())
    assert script.asked == 2


def test_a_view_that_stays_behind_is_answered_in_time_and_a_flood_is_turned_away() -> None:
    script = Script({TP0: 10}, {TP0: 0})
    catch_up = CatchUp(script.topic_ends, script.read_positions, max_wait=0.3, max_waiters=5, poll=0.01)

    async def scenario() -> tuple[list[BaseException | None], float]:
        started = time.monotonic()
        results = await asyncio.gather(*(catch_up.wait() for _ in range(8)), return_exceptions=True)
        return list(results), time.monotonic() - started

    results, took = asyncio.run(scenario())
    assert all(isinstance(r, ViewBehind) for r in results)
    assert sum("too many" in str(r) for r in results) == 3  # over the bound: at once
    assert sum("catching up" in str(r) for r in results) == 5  # the rest after max_wait
    assert took < 1.0
    assert catch_up.waiting == 0


def test_kafka_or_the_store_failing_reaches_every_waiter() -> None:
    script = Script({TP0: 10}, {TP0: 0}, answer_after=0.05)
    script.fail = ViewBehind("cannot reach Kafka: down")
    catch_up = CatchUp(script.topic_ends, script.read_positions, max_wait=5, poll=0.01)

    async def both() -> list[BaseException | None]:
        return list(await asyncio.gather(*(catch_up.wait() for _ in range(3)), return_exceptions=True))

    assert [str(r) for r in asyncio.run(both())] == ["cannot reach Kafka: down"] * 3
    assert script.asked <= 2

    script.fail = None
    calls = {"n": 0}

    def broken_store() -> Offsets:
        calls["n"] += 1
        if calls["n"] > 1:  # the first look passes (behind), the poller's read fails
            raise OSError("disk I/O error")
        return {}

    failing = CatchUp(script.topic_ends, broken_store, max_wait=5, poll=0.01)
    with pytest.raises(ViewBehind, match="disk I/O error"):
        asyncio.run(failing.wait())
