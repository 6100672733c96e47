"""Weighted priorities through a real broker and `kqueue consume` (issue 20, item 1).

20,000 low tasks are queued, then 1,000 high, then a worker starts (no-op tasks: the client fetches
thousands of records ahead, and a fetched backlog of low records is what high ones used to wait
behind). With the default weights every high task finishes before 20 % of the low backlog has
drained, and low keeps moving while high flows (about 1 in 7 of the work while both have some).
With `--weights strict` low waits while high has work. Before weighting, the lanes shared the
worker equally and 13-46 % of the low backlog drained before the last high task (three runs).
Low keeping moving is seen with tasks of 0.5 ms (a no-op high flow may last 20 ms).
Bad `--weights` values are refused with one line naming the value, exit 2.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka import Producer

import kqueue
from kqueue.core.records import TP
from kqueue.transport.consumer import KafkaConsumerEdge
from tests.support.kafka import Kafka, unique
from tests.support.worker import wait_for

ROOT = Path(__file__).resolve().parents[2]
LOW, HIGH = 20_000, 1_000


def consume(bootstrap: str, queue: str, group: str, log: Path, err: Path, *extra: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "KQUEUE_BOOTSTRAP_SERVERS": bootstrap, "KQ_TEST_QUEUE": queue, "KQ_TEST_LOG": str(log)}
    with err.open("w") as stderr:
        return subprocess.Popen([sys.executable, "-m", "kqueue", "consume", "--app", "tests.apps.lanes:app",
                                 "--group", group, "--log-level", "WARNING", *extra],
                                env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=stderr)


def completions(log: Path) -> list[tuple[str, int]]:
    """(lane, monotonic ns) per completed task, in completion order (whole lines only)."""
    if not log.exists():
        return []
    text = log.read_text()
    return [(lane, int(ns)) for line in text[: text.rfind("\n") + 1].splitlines() for lane, ns in [line.split()]]


@dataclass
class Figures:
    low_at_last_high: int  # low tasks finished when the last high one finished
    low_at_first_high: int
    low_while_high: int  # low tasks finished between the first and the last high one
    high_seconds: float  # from the first high completion to the last
    high_rate: float  # high tasks per second over that time
    low_rate_while_high: float
    all_seconds: float  # from the first completion to the last

    def __str__(self) -> str:
        return (f"low finished at the last high: {self.low_at_last_high} ({self.low_at_last_high / LOW:.1%} of the "
                f"backlog), at the first high: {self.low_at_first_high}, between them: {self.low_while_high}; "
                f"high took {self.high_seconds:.2f}s ({self.high_rate:,.0f}/s) while low ran at "
                f"{self.low_rate_while_high:,.0f}/s; all {LOW + HIGH:,} in {self.all_seconds:.2f}s "
                f"({(LOW + HIGH) / self.all_seconds:,.0f}/s)")


def figures(done: list[tuple[str, int]]) -> Figures:
    highs = [i for i, (lane, _) in enumerate(done) if lane == "high"]
    first, last = highs[0], highs[-1]
    low_upto = [0]
    for lane, _ in done:
        low_upto.append(low_upto[-1] + (lane == "low"))
    seconds = max((done[last][1] - done[first][1]) / 1e9, 1e-9)
    while_high = low_upto[last + 1] - low_upto[first]
    return Figures(low_upto[last + 1], low_upto[first], while_high, seconds, (len(highs) - 1) / seconds,
                   while_high / seconds, (done[-1][1] - done[0][1]) / 1e9)


def queue_low_then_high(kafka: Kafka, tmp_path: Path, *extra: str, sleep: float = 0.0) -> Figures:
    """20,000 low tasks queued, then 1,000 high, then a worker started on them (each task sleeps `sleep`)."""
    queue, group = unique("prio"), unique("prio-g")
    log, err = tmp_path / "done.log", tmp_path / "stderr.log"
    app = kqueue.App("prio-producer", kafka.bootstrap)
    task = app.task(queue=queue, name="work")(lambda payload: None)
    app.ensure_queue(queue)
    payload = {"sleep": sleep} if sleep else {}
    for n in range(LOW):
        task.enqueue(payload, key=f"low-{n}", priority="low" if n % 2 else 1)  # 0-2 is low too
    app.flush()
    for n in range(HIGH):
        task.enqueue(payload, key=f"high-{n}", priority="high" if n % 2 else 9)  # 7-9 is high
    app.flush()
    worker = consume(kafka.bootstrap, queue, group, log, err, *extra)
    try:
        wait_for(lambda: len(completions(log)) >= LOW + HIGH, 90, "every task")
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
    assert worker.returncode == 0, err.read_text()
    done = completions(log)
    assert sorted(lane for lane, _ in done) == ["high"] * HIGH + ["low"] * LOW  # each once, none lost
    result = figures(done)
    print(f"\n{' '.join(extra) or 'default weights'}, tasks of {sleep * 1000:g} ms: {result}")
    return result


def test_high_tasks_overtake_a_low_backlog(kafka: Kafka, tmp_path: Path) -> None:
    result = queue_low_then_high(kafka, tmp_path)
    assert result.low_at_last_high < LOW // 5, result  # every high task done before 20 % of low drained


def test_low_keeps_moving_while_high_flows(kafka: Kafka, tmp_path: Path) -> None:
    """No-op high tasks can all finish in 20 ms, less than it takes a held low lane to be fetched again;
    tasks of half a millisecond make the high flow last long enough to see low's share in it."""
    result = queue_low_then_high(kafka, tmp_path, sleep=0.0005)
    assert result.low_at_last_high < LOW // 5, result
    # At 6:3:1 low gets about 1 in 7 of the work while both lanes have some ready (and the gaps).
    assert result.low_while_high >= HIGH // 20, result


def test_strict_weights_run_low_only_when_high_has_nothing_waiting(kafka: Kafka, tmp_path: Path) -> None:
    result = queue_low_then_high(kafka, tmp_path, "--weights", "strict")
    # Low runs only what was fetched before the high lane was seen (the weighted runs: 3-6 %).
    assert result.low_at_last_high <= LOW // 50, result


@pytest.mark.parametrize("value", ["high=x", "medium=3", "high=0,normal=0,low=0", "high=6,high=2", "", "low=-1"])
def test_a_bad_weights_value_is_one_line_naming_it(value: str) -> None:
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "kqueue", "consume", "--app", "tests.apps.lanes:app", "--group", "g",
                           "--weights", value], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "KQUEUE_BOOTSTRAP_SERVERS": "127.0.0.1:1"})  # never reached
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"error: --weights {value!r}"), lines
    assert time.monotonic() - started < 30  # refused on the command line, before any Kafka client


class _Listener:
    def __init__(self) -> None:
        self.assigned: list[TP] = []

    def on_assign(self, partitions: list[TP]) -> None:
        self.assigned += partitions

    def on_revoke(self, partitions: list[TP]) -> None:
        pass

    def on_lost(self, partitions: list[TP]) -> None:
        pass


def test_the_cached_lag_counts_records_not_handed_out_and_never_transaction_markers(kafka: Kafka) -> None:
    """What makes a higher lane wait although nothing of it was handed out yet. A lane whose records
    were all handed out must show none: transaction markers (every delay-router delivery and replay
    ends with one) would otherwise hold lower lanes at their share for good, or, strict, starve them."""
    topic = kafka.create_topic(unique("lag"), partitions=1)
    tp = (topic, 0)
    producer = Producer({"bootstrap.servers": kafka.bootstrap, "transactional.id": unique("lag-txn")})
    producer.init_transactions()
    for _ in range(2):
        producer.begin_transaction()
        for _ in range(3):
            producer.produce(topic, b"v", partition=0)
        producer.commit_transaction()
    edge = KafkaConsumerEdge(kafka.bootstrap, unique("lag-g"))
    listener = _Listener()
    edge.subscribe([topic], listener)
    try:
        got: list[object] = []
        wait_for(lambda: bool(got.extend(edge.poll_batch(100, 0.2))) or len(got) == 6, 30, "the six records")
        wait_for(lambda: edge.cached_lag([tp]) == {tp: 0}, 10, "no lag once all are handed out")
        plain = Producer({"bootstrap.servers": kafka.bootstrap})
        for _ in range(5):
            plain.produce(topic, b"w", partition=0)
        plain.flush(10)
        wait_for(lambda: len(edge.poll_batch(1, 0.2)) == 1, 30, "one of the five")  # the rest stay fetched
        wait_for(lambda: edge.cached_lag([tp]) == {tp: 4}, 10, "the four not handed out")
    finally:
        edge.close()
