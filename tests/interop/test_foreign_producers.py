"""A Java service and a Go service enqueue typed tasks to one kqueue queue (interop/java/producer,
interop/go) while a kqueue worker, with the Avro schema registered as a user would, runs them: every
task runs once, each producer's tasks of one key in the order it sent them, with the payload it sent
and only the documented headers, on the partition kqueue itself would pick for the key."""

from __future__ import annotations

import re
import subprocess
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

import kqueue
from kqueue.core.murmur2 import partition_for_key
from tests.interop.toolchains import (
    BUILD_TIMEOUT_S,
    JAVA_PRODUCER_DIR,
    SCHEMAS_DIR,
    TEST_TIMEOUT_S,
    mvn_command,
    run_go,
)
from tests.support.kafka import Kafka, unique
from tests.support.worker import ThreadedWorker, wait_for

TASKS_EACH = 1000
KEYS = 50
PARTITIONS = 6
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
TASK_LINE = re.compile(r"([0-9a-f-]{36}) (key-\d+) (\d+)$")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def send_email(producer: str, key: str, seq: int) -> dict[str, Any]:
    """What ProduceMain.payload / cmd/kqueue-produce's Payload send for one task."""
    return {
        "to": f"{producer}@{key}.example",
        "subject": key,
        "body": f"{producer} {key} #{seq} ✓ ключ 🎉",
        "priority": seq,
        "tags": [producer, key, str(seq)],
        "reply_to": f"{producer}-reply" if seq % 2 == 1 else None,
    }


def producer_args(bootstrap: str, queue: str, producer: str) -> list[str]:
    return ["--bootstrap", bootstrap, "--queue", queue, "--schema", str(SCHEMAS_DIR / "send_email.avsc"),
            "--count", str(TASKS_EACH), "--keys", str(KEYS), "--producer", producer, "--traceparent", TRACEPARENT]


def sent_tasks(proc: subprocess.Popen[str], name: str) -> dict[str, tuple[str, int]]:
    """The producer's "id key seq" lines, once it exited 0."""
    out, err = proc.communicate(timeout=BUILD_TIMEOUT_S)
    assert proc.returncode == 0, f"{name} producer exit {proc.returncode}\n{out[-3000:]}\n{err[-3000:]}"
    tasks = {m[1]: (m[2], int(m[3])) for m in map(TASK_LINE.fullmatch, ANSI.sub("", out).splitlines()) if m}
    assert len(tasks) == TASKS_EACH, f"{name} printed {len(tasks)} tasks\n{out[-3000:]}"
    return tasks


@pytest.mark.slow
@pytest.mark.interop
@pytest.mark.timeout(TEST_TIMEOUT_S)  # a cold build of both producers; warm, about 30 s
def test_java_and_go_producers_tasks_run_in_key_order_with_their_payloads(kafka: Kafka, tmp_path: Path) -> None:
    app = kqueue.App("interop", kafka.bootstrap, partitions=PARTITIONS, schemas_dir=SCHEMAS_DIR)
    queue = unique("foreign")
    runs: list[tuple[str, dict[str, Any], bytes | None, int, dict[str, str]]] = []
    lock = threading.Lock()

    @app.task(queue=queue, name="send_email", schema="send_email.avsc")  # the producers' kq-type
    def record_run(payload: dict[str, Any], ctx: kqueue.TaskContext) -> None:
        with lock:
            runs.append((ctx.task_id, payload, ctx.key, ctx.partition, dict(ctx.headers)))

    app.ensure_queue(queue)  # as `kqueue queue create` would: the producers write to existing topics

    # Java compiles and produces inside Maven while Go builds; then both produce at once.
    java = subprocess.Popen(
        [*mvn_command(), f"-Dproducer.buildDir={tmp_path / 'java'}", "compile", "exec:java",
         "-Dexec.args=" + " ".join(f"'{a}'" for a in producer_args(kafka.bootstrap, queue, "java"))],
        cwd=JAVA_PRODUCER_DIR, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    binary = tmp_path / "kqueue-produce"
    run_go(["build", "-o", str(binary), "./cmd/kqueue-produce"])
    go = subprocess.Popen([str(binary), *(f"-{a[2:]}" if a.startswith("--") else a
                                          for a in producer_args(kafka.bootstrap, queue, "go"))],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sent = {"java": sent_tasks(java, "java"), "go": sent_tasks(go, "go")}
    by_id = {task_id: (producer, key, seq) for producer, tasks in sent.items() for task_id, (key, seq) in tasks.items()}
    assert len(by_id) == 2 * TASKS_EACH  # distinct ids across both producers

    started = time.monotonic()
    with ThreadedWorker(app, group=unique("g"), concurrency=8) as worker:
        wait_for(lambda: len(runs) >= 2 * TASKS_EACH, timeout=120, what=f"{2 * TASKS_EACH} tasks")
        stats = worker.stop()
    ran_in = time.monotonic() - started
    assert stats.completed == 2 * TASKS_EACH and stats.dead_lettered == 0, stats

    assert sorted(task_id for task_id, *_ in runs) == sorted(by_id)  # each task ran exactly once
    order: dict[tuple[str, str], list[int]] = defaultdict(list)
    for task_id, payload, key, partition, headers in runs:
        producer, sent_key, seq = by_id[task_id]
        assert payload == send_email(producer, sent_key, seq)
        assert key == sent_key.encode()
        assert partition == partition_for_key(key, PARTITIONS)  # murmur2 agrees across the three languages
        assert set(headers) == {"kq-id", "kq-type", "kq-attempt", "kq-enqueued-at", "kq-content-type",
                                "traceparent"}, headers
        assert (headers["kq-id"], headers["kq-type"], headers["kq-attempt"], headers["kq-content-type"],
                headers["traceparent"]) == (task_id, "send_email", "1", "avro", TRACEPARENT)
        order[(producer, sent_key)].append(seq)
    assert len(order) == 2 * KEYS
    for (producer, sent_key), seqs in order.items():
        assert seqs == list(range(TASKS_EACH // KEYS)), f"{producer} {sent_key} ran out of order: {seqs}"
    print(f"2 x {TASKS_EACH} foreign tasks ran in {ran_in:.1f} s")
