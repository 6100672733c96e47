"""A worker dies after producing a batch's retry records and before committing: nothing is lost, and
with transactions nothing is doubled in the tiers. Without them, the same crash doubles retries."""

from __future__ import annotations

import os
import signal
from collections import Counter
from pathlib import Path

import kqueue
from kqueue.core import names
from kqueue.core.headers import header_map
from tests.support.kafka import Kafka, unique
from tests.support.worker import consume_process, recorded, wait_for

TASKS = 20


def _enqueue_flaky(bootstrap: str, queue: str) -> list[str]:
    app = kqueue.App("producer", bootstrap, partitions=2)

    @app.task(queue=queue, name="record")
    def record(payload: dict[str, object]) -> None: ...

    ids = [record.enqueue({"n": i, "fail_attempts": 1}, key=f"k{i}") for i in range(TASKS)]  # attempt 1 fails
    app.flush()
    return ids


def _crash_then_recover(kafka: Kafka, tmp_path: Path, *mode: str) -> tuple[list[str], list[str], Counter[str]]:
    queue, group, log = unique("crash"), unique("g"), tmp_path / "done.log"
    ids = _enqueue_flaky(kafka.bootstrap, queue)
    os.environ["KQUEUE_FAULT"] = "before-commit"
    try:
        victim = consume_process(kafka.bootstrap, queue, group, log, *mode)
    finally:
        del os.environ["KQUEUE_FAULT"]
    assert victim.wait(timeout=90) == 86  # died at the fault point, after producing retries
    assert recorded(log) == []  # attempt 1 failed for every task: nothing completed yet
    uncommitted = kafka.read_all(names.delay_topic(queue, "1s"), committed_only=False, timeout=5)
    assert uncommitted, "the crashed batch wrote its retry records before dying"

    survivor = consume_process(kafka.bootstrap, queue, group, log, *mode)
    try:
        wait_for(lambda: set(recorded(log)) >= set(ids), timeout=120, what="every task to complete")
    finally:
        survivor.send_signal(signal.SIGTERM)
        assert survivor.wait(timeout=60) == 0
    tiered = [header_map(m.headers()) for m in kafka.read_all(names.delay_topic(queue, "1s"), timeout=5)]
    # A retry decided once has one kq-not-before; a record that fell due early and waited again in
    # the tier keeps it. So distinct (id, not-before) pairs count retry decisions written.
    decisions = {(h[names.H_ID], h[names.H_NOT_BEFORE]) for h in tiered}
    return ids, recorded(log), Counter(task_id for task_id, _ in decisions)


def test_transactional_settlement_survives_crash_exactly_once(kafka: Kafka, tmp_path: Path) -> None:
    ids, completions, tier_copies = _crash_then_recover(kafka, tmp_path)
    assert sorted(completions) == sorted(ids)  # every task completed, once
    assert tier_copies == Counter({task_id: 1 for task_id in ids})  # one committed retry each, none doubled


def test_at_least_once_mode_doubles_retries_on_the_same_crash(kafka: Kafka, tmp_path: Path) -> None:
    ids, completions, tier_copies = _crash_then_recover(kafka, tmp_path, "--no-transactions")
    assert set(completions) == set(ids)  # nothing lost either way
    assert all(tier_copies[task_id] == 2 for task_id in ids)  # ...but each retry was written twice
