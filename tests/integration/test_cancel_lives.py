"""A cancel reaches only the task it was issued for, through a real broker (defect 8).

Ids are reused on purpose: an idempotency key enqueued again, a dead letter replayed. A cancel for
such an id that came before the new task (or after the old one finished) must not cancel the new
one; a cancel that has waited past its expiry is dropped and tombstoned; a cancel issued after its
task was enqueued still cancels it.
"""

from __future__ import annotations

import socket
import threading

import kqueue
from kqueue.control.dlq import pending_dead_letters, replay
from kqueue.core import names
from kqueue.core.control import DEFAULT_CANCEL_EXPIRY, ControlCommand
from kqueue.core.dedup import idempotent_task_id
from kqueue.core.headers import now_ms
from kqueue.core.status import TaskEvent
from tests.support.kafka import Kafka, unique
from tests.support.worker import ThreadedWorker, wait_for

DAY_MS = 86_400_000


def _closed_api_url() -> str:
    """A status API address nobody listens on: `app.cancel` sends its cancels unchecked, at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def _statuses(kafka: Kafka, ids: set[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for msg in kafka.read_all(names.status_topic(), timeout=5):
        value = msg.value()
        if value is not None and (event := TaskEvent.decode(value)).task_id in ids:
            out.setdefault(event.task_id, []).append(event.status)
    return out


def test_a_cancel_reaches_only_the_task_it_was_issued_for_and_expires(kafka: Kafka) -> None:
    queue = unique("lives")
    app = kqueue.App("lives", kafka.bootstrap, partitions=2, api_url=_closed_api_url())
    ran: list[str] = []
    lock = threading.Lock()

    @app.task(queue=queue, name="job", max_attempts=1)
    def job(payload: dict[str, object], ctx: kqueue.TaskContext) -> None:
        if payload.get("fail_until_replayed") and names.H_REPLAY_OF not in ctx.headers:
            raise RuntimeError("fails until it is replayed")
        with lock:
            ran.append(ctx.task_id)

    # First: a task dead-letters (its only attempt fails).
    replayed = job.enqueue({"fail_until_replayed": True})
    app.flush()
    with ThreadedWorker(app, group=unique("lives-g"), concurrency=2):
        wait_for(lambda: "failed" in _statuses(kafka, {replayed}).get(replayed, []), 30, "the task to dead-letter")
    assert [letter.task_id for letter in pending_dead_letters(kafka.bootstrap, queue)] == [replayed]

    # Then, with no worker running:
    # - a cancel of the dead-lettered task, then its replay: the replay is a new life and runs;
    assert app.cancel(replayed).outcome == "unchecked"
    assert [letter.task_id for letter in replay(kafka.bootstrap, queue, ids=[replayed]).replayed] == [replayed]
    # - a cancel of an id no task has yet, then a task enqueued with the idempotency key it belongs to;
    reused = idempotent_task_id(queue, "job", "order-7")
    assert app.cancel(reused).sent
    assert job.enqueue({"n": 1}, idempotency_key="order-7") == reused
    # - a cancel issued 8 days ago (past the 7-day expiry) for a task enqueued 9 days ago (as one in a
    #   queue paused all that time): expired, so the task runs, and the cancel is tombstoned;
    now = now_ms()
    assert DEFAULT_CANCEL_EXPIRY < 8 * 86_400
    old = job.send(job.encode({"n": 2}), headers={names.H_ENQUEUED_AT: str(now - 9 * DAY_MS)})
    app.producer.produce(names.control_topic(), ControlCommand("cancel", old, now - 8 * DAY_MS).encode(),
                         old.encode(), [])
    # - the control: a task cancelled after it was enqueued is cancelled.
    doomed = job.enqueue({"n": 3})
    app.flush()
    assert app.cancel(doomed).sent
    app.flush()

    with ThreadedWorker(app, group=unique("lives-g"), concurrency=2):
        wait_for(lambda: {replayed, reused, old} <= set(ran), 30, "the tasks whose ids had stale cancels to run")
        wait_for(lambda: "cancelled" in _statuses(kafka, {doomed}).get(doomed, []), 30, "the control's cancel")
    assert sorted(ran) == sorted([replayed, reused, old])  # each once; the cancelled one never
    control = [m for m in kafka.read_all(names.control_topic(), timeout=5) if m.key() == old.encode()]
    assert control and control[-1].value() is None  # the expired cancel is tombstoned
