"""The worker's INFO summary line, from scripted settlements and ticks on a scripted clock: what it
counts, when it writes, what the line says; and what `kqueue consume` installs at each log level."""

from __future__ import annotations

import json
import logging

import pytest

import kqueue
from kqueue.core.records import Settlement
from kqueue.observe.install import install_operations
from kqueue.observe.logs import LifecycleLog, formatter
from kqueue.observe.summary import SUMMARY_LOGGER, SummaryLog, Tally, lane_lag, summary_line
from kqueue.sdk.middleware import SettleEvent, TickEvent
from kqueue.worker import events as worker_events
from kqueue.worker.events import Completions
from kqueue.worker.work import WorkItem

TICK = TickEvent("w", "g", 8, 0, 0, (), "m", 0.0, False)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _completions(count: int) -> Completions:
    return Completions([WorkItem("email", 0, n, b"k", b"", {}, "email") for n in range(count)], 0)


def _failure(outcome: Settlement, destination: str) -> SettleEvent:
    return SettleEvent(outcome, "t-1", "send", "email", "email", 0, 1, b"k", 1, "RuntimeError", "boom", None, None,
                       0.1, 0, destination)


@pytest.fixture()
def summary_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger=SUMMARY_LOGGER)
    return caplog


def test_a_line_when_a_window_of_activity_is_ten_seconds_old(monkeypatch: pytest.MonkeyPatch,
                                                           summary_log: pytest.LogCaptureFixture) -> None:
    def never(*_: object) -> SettleEvent:
        raise AssertionError("a completion's event was built: the summary only counts them")

    monkeypatch.setattr(worker_events, "completed_event", never)
    clock = Clock(100.0)
    summary = SummaryLog(10.0, lag=lambda: 4_200, clock=clock)
    summary.on_settle_many(_completions(5))  # opens the window at 100
    clock.now = 101.0
    summary.on_settle_many([_failure(Settlement.RETRIED, "email.delay.1s")])
    summary.on_settle_many([_failure(Settlement.DEAD_LETTERED, "email.dlq")])
    clock.now = 109.9
    summary.on_tick(TICK)
    assert summary_log.records == []  # not ten seconds yet
    summary.on_settle_many(_completions(1_995))
    clock.now = 110.0
    summary.on_tick(TICK)
    [line] = summary_log.records
    assert line.levelno == logging.INFO and line.name == "kqueue.summary"
    assert line.getMessage() == ("settled in the last 10.0s: 2,000 completed (200.0/s), 1 retried, 1 dead-lettered; "
                                 "lag 4,200")
    as_json = json.loads(formatter("json").format(line))
    assert {k: as_json[k] for k in ("completed", "completed_per_s", "retried", "dead_lettered", "lag", "window_s")} \
        == {"completed": 2_000, "completed_per_s": 200.0, "retried": 1, "dead_lettered": 1, "lag": 4_200,
            "window_s": 10.0}

    clock.now = 125.0
    summary.on_tick(TICK)
    assert len(summary_log.records) == 1  # a quiet worker writes nothing


def test_the_window_left_open_is_written_when_the_worker_stops(summary_log: pytest.LogCaptureFixture) -> None:
    clock = Clock(50.0)
    summary = SummaryLog(10.0, clock=clock)  # no lag probe (no metrics port): no lag in the line
    summary.on_settle_many(_completions(3))
    summary.on_settle_many([_failure(Settlement.CANCELLED, "email.status")])
    clock.now = 52.0
    summary.flush()
    summary.flush()  # nothing new: no second line
    assert [r.getMessage() for r in summary_log.records] == [
        "settled in the last 2.0s: 3 completed (1.5/s), 0 retried, 0 dead-lettered, 1 cancelled"]


def test_the_router_s_deliveries_are_counted_and_an_empty_window_says_nothing() -> None:
    text, fields = summary_line(Tally(delivered=7), 10.0, 0)
    assert text == "settled in the last 10.0s: 0 completed (0.0/s), 0 retried, 0 dead-lettered, " \
                   "7 delivered from delay tiers; lag 0"
    assert fields["delivered"] == 7 and fields["lag"] == 0
    assert not Tally() and Tally(retried=1)


def test_the_lag_is_the_task_lanes_not_the_delay_tiers() -> None:
    assert lane_lag({("email", "normal", ""): 10, ("email", "high", ""): 2, ("email", "", "5s"): 400}) == 12


def _installed(level: int) -> list[str]:
    app = kqueue.App("summary", "127.0.0.1:9")
    root = logging.getLogger()
    before = root.level
    root.setLevel(level)
    try:
        ops = install_operations(app, metrics_port=None, summary_every=10.0)
    finally:
        root.setLevel(before)
    return [type(m).__name__ for m in ops.middleware]


def test_kqueue_consume_installs_the_summary_at_info_and_nothing_at_error() -> None:
    assert _installed(logging.INFO) == ["LifecycleLog", "SummaryLog"]
    assert _installed(logging.WARNING) == ["LifecycleLog"]
    assert _installed(logging.ERROR) == []  # the leanest worker: no settle hook at all


def test_at_info_a_completion_has_no_line_and_a_failure_has_one_at_warning(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="kqueue.task")
    log = LifecycleLog()
    log.on_settle_many(_completions(4))
    log.on_settle_many([_failure(Settlement.RETRIED, "email.delay.1s")])
    log.on_settle_many([_failure(Settlement.DEAD_LETTERED, "email.dlq")])
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.WARNING, "task retried"), (logging.WARNING, "task dead-lettered")]
