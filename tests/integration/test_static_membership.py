"""`kqueue consume --instance-id` (static membership, KIP-848): a worker restarted with its id takes
its own partitions back without moving anyone else's, and one restarted after a crash, while its
predecessor still holds the id, keeps joining until that member's session expires."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import kqueue
from kqueue.transport.inspect import group_split
from tests.support.kafka import Kafka, unique
from tests.support.worker import recorded, wait_for

ROOT = Path(__file__).resolve().parents[2]


def start(kafka: Kafka, queue: str, group: str, log: Path, err: Path, instance_id: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "KQUEUE_BOOTSTRAP_SERVERS": kafka.bootstrap, "KQ_TEST_QUEUE": queue,
           "KQ_TEST_LOG": str(log), "KQUEUE_INSTANCE_ID": instance_id}  # the env a pod would set
    return subprocess.Popen([sys.executable, "-m", "kqueue", "consume", "--app", "tests.apps.recorder:app",
                             "--group", group, "--log-level", "INFO"],
                            env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err.open("w"))


def partition_events(err: Path) -> list[str]:
    return re.findall(r"(assigned|revoked|lost) \d+ partition", err.read_text())


def setup(kafka: Kafka, tmp_path: Path) -> tuple[str, str, kqueue.App]:
    queue, group = unique("static"), unique("g")
    app = kqueue.App("recorder", kafka.bootstrap, partitions=6)

    @app.task(queue=queue)
    def record(payload: dict[str, object]) -> None:
        return None

    app.ensure_queue(queue)
    return queue, group, app


def test_a_worker_restarted_with_its_instance_id_takes_back_its_own_partitions(kafka: Kafka, tmp_path: Path) -> None:
    queue, group, app = setup(kafka, tmp_path)
    log = tmp_path / "done.log"
    a_err, b_err, a2_err = tmp_path / "a.err", tmp_path / "b.err", tmp_path / "a2.err"
    a = start(kafka, queue, group, log, a_err, "pod-a")
    b = start(kafka, queue, group, log, b_err, "pod-b")
    try:
        wait_for(lambda: group_split(kafka.bootstrap, group) == (2, 2), what="both workers to hold their share")
        time.sleep(3)  # the group settles
        b_before = partition_events(b_err)
        a.send_signal(signal.SIGTERM)  # a rolling restart: the pod stops, a new one starts, same name
        assert a.wait(timeout=60) == 0
        a2 = start(kafka, queue, group, log, a2_err, "pod-a")
        try:
            wait_for(lambda: "assigned" in partition_events(a2_err), timeout=30, what="the new pod-a to join")
            ids = [app.tasks[(queue, "record")].enqueue({"n": n}, key=f"k{n}") for n in range(60)]
            app.flush()
            wait_for(lambda: set(ids) <= set(recorded(log)), what="tasks on every partition to complete")
            time.sleep(1)
            # b's partitions never moved: no revoke, no extra assignment while pod-a restarted
            assert partition_events(b_err) == b_before
            assert partition_events(a2_err)[0] == "assigned"
        finally:
            a2.send_signal(signal.SIGTERM)
            a2.wait(timeout=60)
    finally:
        b.send_signal(signal.SIGTERM)
        b.wait(timeout=60)
        if a.poll() is None:
            a.kill()


def test_a_worker_restarted_after_a_crash_joins_once_its_predecessor_is_gone(kafka: Kafka, tmp_path: Path) -> None:
    queue, group, app = setup(kafka, tmp_path)
    log = tmp_path / "done.log"
    a_err, a2_err = tmp_path / "a.err", tmp_path / "a2.err"
    a = start(kafka, queue, group, log, a_err, "pod-a")
    wait_for(lambda: "assigned" in partition_events(a_err), what="pod-a to join")
    a.kill()  # no leave: the group keeps pod-a's member until its session (10 s here) expires
    a.wait()
    a2 = start(kafka, queue, group, log, a2_err, "pod-a")
    try:
        ids = [app.tasks[(queue, "record")].enqueue({"n": n}, key=f"k{n}") for n in range(30)]
        app.flush()
        wait_for(lambda: set(ids) <= set(recorded(log)), timeout=90,
                 what="the restarted worker to join and run the tasks")
        assert a2.poll() is None  # the refused joins did not end it
        assert "still held by a member that did not leave" in a2_err.read_text()
    finally:
        a2.send_signal(signal.SIGTERM)
        assert a2.wait(timeout=60) == 0
