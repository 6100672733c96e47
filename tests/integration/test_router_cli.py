"""`kqueue produce --delay` and `kqueue router` on their own, with workers that do not route."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from kqueue.core import names
from kqueue.core.headers import header_map
from tests.integration.test_cli import ROOT, kq
from tests.support.kafka import Kafka, unique
from tests.support.worker import consume_process, recorded, wait_for


def test_delayed_produce_is_delivered_by_a_standalone_router(kafka: Kafka, tmp_path: Path) -> None:
    queue, log = unique("routed"), tmp_path / "done.log"
    enqueued_at = time.time()
    result = kq(kafka.bootstrap, "produce", queue, "--type", "record", "--key", "k", "--json", '{"n": 1}',
                "--delay", "3s")
    assert result.returncode == 0, result.stderr
    task_id = result.stdout.strip()
    [waiting] = kafka.read_all(names.delay_topic(queue, "1s"), expected=1)
    headers = header_map(waiting.headers())
    assert headers[names.H_TARGET] == queue and int(headers[names.H_NOT_BEFORE]) >= enqueued_at * 1000 + 3000

    worker = consume_process(kafka.bootstrap, queue, unique("g"), log, "--no-router")
    router = subprocess.Popen([sys.executable, "-m", "kqueue", "router", "--queue", queue, "--group", unique("r"),
                               "--log-level", "WARNING"],
                              env={**os.environ, "KQUEUE_BOOTSTRAP_SERVERS": kafka.bootstrap}, cwd=ROOT)
    try:
        time.sleep(1)
        assert recorded(log) == []  # not due yet, and the worker does not route
        wait_for(lambda: recorded(log) == [task_id], timeout=60, what="the router to deliver the task")
        assert time.time() - enqueued_at >= 3.0
    finally:
        for proc in (worker, router):
            proc.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 0 and router.wait(timeout=60) == 0


def test_bad_delay_and_tiers_are_one_line_errors(kafka: Kafka) -> None:
    bad_delay = kq(kafka.bootstrap, "produce", "q", "--type", "t", "--json", "{}", "--delay", "soon")
    assert bad_delay.returncode == 2 and "--delay" in bad_delay.stderr and "Traceback" not in bad_delay.stderr
    bad_tiers = kq(kafka.bootstrap, "router", "--queue", "q", "--tiers", "0s")
    assert bad_tiers.returncode == 2 and "--tiers" in bad_tiers.stderr and "Traceback" not in bad_tiers.stderr
