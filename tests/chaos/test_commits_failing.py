"""A due backlog in a delay tier while every commit fails (an outage, as the worker sees it): the
records waiting for a commit stay bounded, and each is delivered exactly once when commits work."""

from __future__ import annotations

import os
import re
import signal
import time
from collections import Counter
from pathlib import Path

from confluent_kafka import Producer

import kqueue
from kqueue.core import names
from kqueue.core.headers import header_map
from tests.support.kafka import Kafka, unique
from tests.support.worker import consume_process, wait_for


def test_tier_records_held_while_commits_fail_stay_under_the_bound(kafka: Kafka, tmp_path: Path) -> None:
    """Before, backpressure counted task partitions only: 5,000 due tier records were held against
    a bound of 80. Here 2,000 are due; with `--batch-size 5 --concurrency 1` the bound is 8 x 20 = 160."""
    queue, group, log, err = unique("outage"), unique("g"), tmp_path / "done.log", tmp_path / "worker.err"
    app = kqueue.App("producer", kafka.bootstrap, partitions=1)

    @app.task(queue=queue, name="record")
    def record(payload: dict[str, object]) -> None: ...

    app.ensure_queue(queue)
    producer = Producer({"bootstrap.servers": kafka.bootstrap, "linger.ms": 20})
    total = 2000
    for n in range(total):
        producer.produce(names.delay_topic(queue, "1s"), b'{"n": %d}' % n, f"k{n}".encode(), partition=0, headers=[
            (names.H_TYPE, b"record"), (names.H_CONTENT_TYPE, b"json"), (names.H_ID, f"t{n}".encode()),
            (names.H_TARGET, queue.encode())])
    assert producer.flush(30) == 0
    time.sleep(1.5)  # the 1 s tier's wait is over: all of it is due
    os.environ["KQUEUE_FAULT"] = "fail-commits:8"
    try:
        with err.open("wb") as stderr:
            worker = consume_process(kafka.bootstrap, queue, group, log, "--batch-size", "5", "--concurrency", "1",
                                     "--log-level", "WARNING", stderr=stderr.fileno())
    finally:
        del os.environ["KQUEUE_FAULT"]
    try:
        # Started (its handlers installed: an early SIGUSR1 would kill it) and refusing commits; then a
        # few seconds for the tier partition to stop at the bound.
        wait_for(lambda: "injected: the commit was refused" in err.read_text(), timeout=90,
                 what="the first refused commit")
        time.sleep(3)
        worker.send_signal(signal.SIGUSR1)
        wait_for(lambda: "worker state" in err.read_text(), timeout=10, what="the state line")
        held = int(re.findall(r"'held_for_commit': (\d+)", err.read_text())[0])
        assert 0 < held <= 160 + 5, f"{held} records held for a commit"
        delivered = kafka.read_all(queue, expected=total, timeout=90)
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 0, err.read_text()[-2000:]
    ids = Counter(header_map(m.headers())[names.H_ID] for m in delivered)
    assert len(ids) == total and max(ids.values()) == 1  # each delivered exactly once
    assert "injected: the commit was refused" in err.read_text()
