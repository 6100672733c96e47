"""Handler invocation (time limits vs a handler's own TimeoutError) and transaction error sorting."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

import kqueue
from kqueue.transport.txn import FENCED_CODES, TxnAction, classify, commit_outcome, is_permanent, retrying
from kqueue.worker.executor import Executor
from kqueue.worker.runner import Runner
from kqueue.worker.work import WorkItem


def _item(app: kqueue.App, name: str) -> WorkItem:
    item = WorkItem("q", 0, 7, b"k", b"{}", {}, "q")
    item.task = app.tasks[("q", name)]
    item.payload = {}
    return item


def test_an_async_handlers_own_timeout_error_keeps_its_message_and_traceback() -> None:
    app = kqueue.App("runner", "127.0.0.1:1")

    @app.task(queue="q", timeout=5)
    async def talks_to_a_socket(payload: Any) -> None:
        raise TimeoutError("socket read timed out")

    @app.task(queue="q", timeout=0.05)
    async def too_slow(payload: Any) -> None:
        await asyncio.sleep(5)

    runner = Runner()
    own = asyncio.run(runner.run_async(_item(app, "talks_to_a_socket")))
    assert own is not None and own.error_type == "TimeoutError" and own.message == "socket read timed out"
    assert "talks_to_a_socket" in own.trace
    limit = asyncio.run(runner.run_async(_item(app, "too_slow")))
    assert limit is not None and limit.error_type == "TimeoutError" and "0.05s time limit" in limit.message


def test_a_sync_handlers_own_timeout_error_is_its_failure_too() -> None:
    app = kqueue.App("runner", "127.0.0.1:1")

    @app.task(queue="q", timeout=5)
    def connect(payload: Any) -> None:
        raise TimeoutError("connect timed out")

    failure = Runner().run_sync(_item(app, "connect"))
    assert failure is not None and failure.message == "connect timed out" and "connect" in failure.trace


def test_overrunning_sync_threads_are_counted_until_they_end() -> None:
    app = kqueue.App("runner", "127.0.0.1:1")
    release = threading.Event()

    @app.task(queue="q", timeout=0.05)
    def stuck(payload: Any) -> None:
        release.wait(10)

    @app.task(queue="q", timeout=5)
    def quick(payload: Any) -> None:
        return None

    runner = Runner()
    for _ in range(3):
        failure = runner.run_sync(_item(app, "stuck"))
        assert failure is not None and "time limit" in failure.message
    assert runner.run_sync(_item(app, "quick")) is None  # in time: not an overrun
    assert (runner.overruns.live, runner.overruns.total) == (3, 3)
    release.set()
    deadline = time.monotonic() + 5
    while runner.overruns.live and time.monotonic() < deadline:
        time.sleep(0.01)
    assert (runner.overruns.live, runner.overruns.total) == (0, 3)


def test_a_halted_executor_starts_nothing_a_runner_already_took() -> None:
    app = kqueue.App("runner", "127.0.0.1:1")
    started: list[int] = []
    gate = threading.Event()

    @app.task(queue="q")
    def job(payload: Any) -> None:
        started.append(payload["n"])
        gate.wait(10)

    executor = Executor(1, Runner())
    items = []
    for n in range(6):  # one key: a runner takes them as one run, in order
        item = _item(app, "job")
        item.payload, item.offset = {"n": n}, n
        items.append(item)
    executor.submit(items)
    deadline = time.monotonic() + 5
    while not started and time.monotonic() < deadline:
        time.sleep(0.01)
    executor.halt()
    gate.set()
    while executor.running() and time.monotonic() < deadline:
        time.sleep(0.01)
    executor.stop()
    assert started == [0]  # the rest of the run was taken but never started
    assert [item.offset for item, _ in executor.drain()] == [0]


def test_a_slow_task_holds_back_no_other_key() -> None:
    app = kqueue.App("runner", "127.0.0.1:1")
    gate = threading.Event()
    done: list[int] = []

    @app.task(queue="q")
    def job(payload: Any) -> None:
        if payload["n"] == 0:
            gate.wait(10)
        done.append(payload["n"])

    executor = Executor(2, Runner())
    items = []
    for n in range(12):
        item = _item(app, "job")
        item.payload, item.offset, item.key = {"n": n}, n, f"k{n}".encode()
        items.append(item)
    executor.submit(items)
    deadline = time.monotonic() + 5
    while len(done) < 11 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sorted(done) == list(range(1, 12))  # every other key ran while the slow one waits
    gate.set()
    executor.stop()


def test_starts_wait_out_a_hold_and_then_skip_what_is_no_longer_owned() -> None:
    app = kqueue.App("runner", "127.0.0.1:1")
    started: list[int] = []

    @app.task(queue="q")
    def job(payload: Any) -> None:
        started.append(payload["n"])

    class Ownership:  # the partition state's `live` flag, as the poll loop would flip it
        live = True
        paused_work = None  # its queue is not paused

    kept, lost = Ownership(), Ownership()
    executor = Executor(2, Runner())
    executor.hold_starts(0.3)  # as after the process was frozen
    items = []
    for n, owner in ((0, kept), (1, lost)):
        item = _item(app, "job")
        item.payload, item.offset, item.key, item.owner = {"n": n}, n, f"k{n}".encode(), owner  # type: ignore[assignment]
        items.append(item)
    executor.submit(items)
    time.sleep(0.1)
    assert started == []  # held
    lost.live = False  # meanwhile the poll loop learns that partition was taken away
    deadline = time.monotonic() + 5
    while not started and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)
    executor.stop()
    assert started == [0]


@pytest.mark.parametrize(("error", "action"), [
    (KafkaError(KafkaError._TIMED_OUT, "coordinator moving", retriable=True), TxnAction.RETRY),
    (KafkaError(KafkaError._STATE, "needs abort", txn_requires_abort=True), TxnAction.ABORT),
    (KafkaError(KafkaError._FENCED, "fenced", fatal=True), TxnAction.FATAL),
    (KafkaError(KafkaError.ILLEGAL_GENERATION, "rebalance"), TxnAction.ABORT),
    (KafkaError(KafkaError.MSG_SIZE_TOO_LARGE, "too large"), TxnAction.ABORT),
])
def test_transaction_errors_sort_into_retry_abort_fatal(error: KafkaError, action: TxnAction) -> None:
    assert classify(error) is action


def test_only_errors_about_the_batchs_own_records_are_permanent() -> None:
    assert is_permanent(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
    assert not is_permanent(KafkaError(KafkaError.ILLEGAL_GENERATION))
    assert not is_permanent(KafkaError(KafkaError._TIMED_OUT, retriable=True))


def test_a_retriable_step_is_called_again_and_others_are_not() -> None:
    calls: list[int] = []

    def flaky_commit() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "timed out", retriable=True))
        return "committed"

    assert retrying(flaky_commit, budget=5, sleep=lambda _s: None) == "committed" and len(calls) == 3

    def needs_abort() -> None:
        calls.append(1)
        raise KafkaException(KafkaError(KafkaError._STATE, "abort", txn_requires_abort=True))

    calls.clear()
    with pytest.raises(KafkaException):
        retrying(needs_abort, budget=5, sleep=lambda _s: None)
    assert len(calls) == 1


def test_retrying_gives_up_when_the_budget_is_spent() -> None:
    def always_retriable() -> None:
        raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "timed out", retriable=True))

    with pytest.raises(KafkaException):
        retrying(always_retriable, budget=0.3, pause=0.1)


def test_the_runner_does_not_start_a_task_with_a_pending_cancel() -> None:
    import asyncio

    import kqueue
    from kqueue.worker.runner import Runner
    from kqueue.worker.work import WorkItem

    app = kqueue.App("cancel-runner", "localhost:1")
    ran: list[str] = []
    sync_task = app.task(queue="q", name="s")(lambda payload: ran.append("sync"))

    async def async_handler(payload: object) -> None:
        ran.append("async")

    async_task = app.task(queue="q", name="a")(async_handler)
    pending = {"t-1"}
    runner = Runner(None, pending)
    for task in (sync_task, async_task):
        item = WorkItem("q", 0, 0, None, b"{}", {"kq-id": b"t-1"}, "q", task=task, payload={})
        failure = runner.run_sync(item) if task is sync_task else asyncio.run(runner.run_async(item))
        assert failure is not None and failure.cancelled and not failure.retryable
    assert ran == []
    pending.discard("t-1")  # the watch drops it once its tombstone is read: the id may run again
    assert runner.run_sync(WorkItem("q", 0, 0, None, b"{}", {"kq-id": b"t-1"}, "q", task=sync_task,
                                    payload={})) is None
    assert ran == ["sync"]


def test_a_fenced_commit_is_judged_by_whether_its_offsets_are_visible() -> None:
    ours = {("q", 0): (10, "kq1:a"), ("q", 1): (7, "")}
    assert commit_outcome(ours, {("q", 0): (10, "kq1:a"), ("q", 1): (7, "")}) == "landed"
    assert commit_outcome(ours, {("q", 0): (8, ""), ("q", 1): (5, "")}) == "aborted"
    assert commit_outcome(ours, {}) == "aborted"  # the group never committed these partitions
    # Same offset, other metadata: the batch only re-noted what completed above a slow task.
    assert commit_outcome({("q", 0): (8, "kq1:b")}, {("q", 0): (8, "kq1:a")}) == "aborted"
    assert commit_outcome(ours, {("q", 0): (10, "kq1:a"), ("q", 1): (5, "")}) == "unknown"  # not atomic
    assert commit_outcome({}, {}) == "unknown"
    assert KafkaError.PRODUCER_FENCED in FENCED_CODES and KafkaError._FENCED in FENCED_CODES
