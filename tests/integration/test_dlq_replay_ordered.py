"""`kqueue dlq replay --ordered` (real broker, a real worker): a key whose first task went through a
retry before failing is dead-lettered out of order (its later tasks failed first). Replayed plainly,
the key's tasks go back in the DLQ's order; with --ordered, in the order they were first enqueued.
And a replay never doubles: a second one replays nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import kqueue
from kqueue.core import names
from kqueue.core.headers import header_map
from tests.support.api import ROOT
from tests.support.kafka import Kafka, unique
from tests.support.worker import ThreadedWorker, wait_for


def _replay(bootstrap: str, queue: str, ids: list[str], *flags: str) -> subprocess.CompletedProcess[str]:
    args = [a for task_id in ids for a in ("--id", task_id)]
    return subprocess.run([sys.executable, "-m", "kqueue", "dlq", "replay", queue, *args, *flags], cwd=ROOT,
                          env={**os.environ, "KQUEUE_BOOTSTRAP_SERVERS": bootstrap}, capture_output=True, text=True,
                          timeout=120, check=False)


def test_ordered_replay_puts_a_keys_tasks_back_in_enqueue_order(kafka: Kafka) -> None:
    queue = unique("ordered-replay")
    app = kqueue.App("ordered-replay", kafka.bootstrap, partitions=2)

    @app.task(queue=queue, max_attempts=2, backoff=kqueue.RetryPolicy(base=1.0, jitter=0.0))
    def first(payload: dict[str, Any]) -> None:
        raise RuntimeError("fails twice, through a retry")

    @app.task(queue=queue, max_attempts=1)
    def later(payload: dict[str, Any]) -> None:
        raise RuntimeError("fails at once")

    enqueued: dict[str, list[str]] = {}
    for key in ("plain", "ordered"):
        enqueued[key] = [first.enqueue({"n": 0}, key=key)] + [later.enqueue({"n": n}, key=key) for n in range(1, 5)]
    app.flush()
    everything = [t for ids in enqueued.values() for t in ids]
    with ThreadedWorker(app, group=unique("ordered-replay-g"), concurrency=4):
        wait_for(lambda: len(kafka.read_all(names.dlq_topic(queue), timeout=2)) == len(everything), 90,
                 "every task dead-lettered")
    letters = kafka.read_all(names.dlq_topic(queue), expected=len(everything))
    for key, ids in enqueued.items():
        in_dlq = [header_map(m.headers())[names.H_ID] for m in letters if m.key() == key.encode()]
        assert in_dlq == [*ids[1:], ids[0]], in_dlq  # the retried first task was dead-lettered last

    plain = _replay(kafka.bootstrap, queue, enqueued["plain"])
    ordered = _replay(kafka.bootstrap, queue, enqueued["ordered"], "--ordered")
    assert plain.returncode == 0 and ordered.returncode == 0, plain.stderr + ordered.stderr
    again = _replay(kafka.bootstrap, queue, everything, "--ordered")
    assert again.returncode == 0 and "replayed 0 dead letter(s)" in again.stdout, again.stdout  # never doubles

    back = [m for m in kafka.read_all(names.main_topic(queue), expected=2 * len(everything))
            if names.H_REPLAYED_AT in header_map(m.headers())]
    replayed = {key: [header_map(m.headers())[names.H_ID] for m in back if m.key() == key.encode()]
                for key in enqueued}
    assert replayed["plain"] == [*enqueued["plain"][1:], enqueued["plain"][0]], replayed  # the DLQ's order
    assert replayed["ordered"] == enqueued["ordered"], replayed  # as first enqueued
