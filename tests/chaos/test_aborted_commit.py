"""The broker aborts a batch's transaction (here on purpose, as a rebalance would): the batch is kept
and committed again, a held tier partition still wakes, and nothing is lost or written twice."""

from __future__ import annotations

import signal
import subprocess
from collections import Counter
from pathlib import Path

import pytest

import kqueue
from kqueue.core import names
from kqueue.core.headers import header_map
from tests.support.kafka import Kafka, unique
from tests.support.worker import consume_process, recorded, wait_for


def test_an_aborted_transaction_is_committed_again(kafka: Kafka, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    queue, group, log = unique("abort"), unique("g"), tmp_path / "done.log"
    app = kqueue.App("producer", kafka.bootstrap, partitions=1)

    @app.task(queue=queue, name="record")
    def record(payload: dict[str, object]) -> None: ...

    flaky = record.enqueue({"n": 0, "fail_attempts": 1}, key="a")  # its retry is the first routed record
    scheduled = record.enqueue({"n": 1}, key="b", delay=3)  # held in the 1s tier until due
    plain = record.enqueue({"n": 2}, key="c")
    app.flush()

    monkeypatch.setenv("KQUEUE_FAULT", "abort-first")
    worker = consume_process(kafka.bootstrap, queue, group, log, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: {flaky, scheduled, plain} <= set(recorded(log)), timeout=90, what="every task")
    finally:
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err.decode()
    assert b"injected abort" in err and b"the batch is kept and committed again" in err
    assert Counter(recorded(log)) == Counter({flaky: 1, scheduled: 1, plain: 1})
    tiered = [header_map(m.headers()) for m in kafka.read_all(names.delay_topic(queue, "1s"), timeout=5)]
    retries = {(h[names.H_ID], h[names.H_NOT_BEFORE]) for h in tiered if h[names.H_ID] == flaky}
    assert len(retries) == 1  # the aborted retry record is not visible; the re-commit wrote it once
