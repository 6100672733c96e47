"""Integer priorities 0-9 through the entry points a user touches (real broker): `kqueue produce
--priority`, `POST /api/v1/tasks` and the SDK land each task in the lane the mapping names (7-9
high, 3-6 normal, 0-2 low); anything else is a one-line error or a 422, and nothing is produced."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from kqueue.core import names
from kqueue.core.headers import header_map
from tests.apps.lifecycle import make_app
from tests.support.api import ROOT, ApiProcess
from tests.support.kafka import Kafka, unique


def _kq(bootstrap: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kqueue", *args], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "KQUEUE_BOOTSTRAP_SERVERS": bootstrap}, timeout=120, check=False)


def _lane_ids(kafka: Kafka, queue: str, lane: str, expected: int) -> set[str]:
    records = kafka.read_all(names.lane_topic(queue, lane), expected=expected, timeout=30)
    return {header_map(m.headers())[names.H_ID] for m in records}


def test_integer_priorities_reach_their_lanes_from_the_cli_the_api_and_the_sdk(kafka: Kafka, tmp_path: Path) -> None:
    queue = unique("prio-entry")
    app = make_app(queue, kafka.bootstrap)
    app.ensure_queue(queue)
    add = app.tasks[(queue, "add")]
    by_lane: dict[str, set[str]] = {"high": set(), "normal": set(), "low": set()}
    for priority, lane in (("9", "high"), ("7", "high"), ("6", "normal"), ("3", "normal"), ("2", "low"),
                           ("0", "low"), ("high", "high")):
        done = _kq(kafka.bootstrap, "produce", queue, "--type", "add", "--json", '{"a": 1, "b": 2}',
                   "--priority", priority)
        assert done.returncode == 0, done.stderr
        by_lane[lane].add(done.stdout.split()[-1])
    for bad in ("10", "-1", "urgent", "7.5"):
        done = _kq(kafka.bootstrap, "produce", queue, "--type", "add", "--json", "{}", "--priority", bad)
        assert done.returncode == 2 and "--priority" in done.stderr and "Traceback" not in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    with ApiProcess(kafka.bootstrap, queue, tmp_path / "view.db") as api:
        for priority, lane in ((8, "high"), (5, "normal"), (1, "low"), ("low", "low")):
            code, body = api.request("POST", "/api/v1/tasks", {"type": "add", "payload": {"a": 1, "b": 1},
                                                               "priority": priority})
            assert code == 202, body
            by_lane[lane].add(body["task_id"])
        for bad in (10, -1, True, 7.5, "7", "urgent"):
            code, body = api.request("POST", "/api/v1/tasks", {"type": "add", "payload": {"a": 1, "b": 1},
                                                               "priority": bad})
            assert code == 422, (bad, code, body)
    by_lane["high"].add(add.enqueue({"a": 2, "b": 2}, priority=9))
    by_lane["low"].add(add.enqueue({"a": 2, "b": 2}, priority=0))
    app.flush()
    for lane, ids in by_lane.items():
        assert _lane_ids(kafka, queue, lane, len(ids)) == ids, lane  # each in its lane, and nothing else there
