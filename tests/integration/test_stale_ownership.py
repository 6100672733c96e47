"""A worker frozen past its session gets its partition back while its old run still runs: that
stale run must not reach the new ownership's state (real broker, `kqueue consume` subprocess)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.test_dedup import ROOT, _env, _runs, _stop, _worker
from tests.support.kafka import Kafka, unique
from tests.support.worker import wait_for

ENQUEUE = """
import sys
from tests.apps.dedup import app
task = app.tasks[(sys.argv[1], "sync_account")]
payload = {"account": "acct-9", "sleep": float(sys.argv[3])}
if float(sys.argv[2]) > 0:
    payload["first_sleep"] = float(sys.argv[2])
print(task.enqueue(payload, key=sys.argv[4], unique_key="acct-9"))
app.flush()
"""


def _enqueue(env: dict[str, str], queue: str, first_sleep: float, sleep: float, key: str) -> str:
    done = subprocess.run([sys.executable, "-c", ENQUEUE, queue, str(first_sleep), str(sleep), key], env=env,
                          cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    return done.stdout.strip()


@pytest.mark.slow
def test_a_stale_runs_end_does_not_free_the_unique_key_of_the_next_ownership(kafka: Kafka, tmp_path: Path) -> None:
    """The holder runs 20 s; the worker is stopped 13 s (past its session), loses the partition and
    gets it back: the holder is re-delivered and claimed again by the new ownership, its re-run
    waiting behind the old run. When the old run ends, it must not free the key: a second task of
    the key (another record key, the same partition) is a duplicate while the re-run runs. Before,
    the old run's end popped the claim from the new ownership's book and the second task ran beside
    the re-run."""
    queue, group, log = unique("stale"), unique("g"), tmp_path / "runs.log"
    env = _env(kafka.bootstrap, queue, log)
    holder = _enqueue(env, queue, 20, 8, "holder")
    worker = _worker(env, group)
    try:
        wait_for(lambda: any(r[0] == "start" for r in _runs(log)), 90, "the holder to start")
        worker.send_signal(signal.SIGSTOP)
        time.sleep(13)  # past the 10 s session of the dev broker: the partition is lost
        worker.send_signal(signal.SIGCONT)
        wait_for(lambda: sum(1 for r in _runs(log) if r[0] == "start" and r[2] == holder) == 2, 90,
                 "the holder's re-run in the new ownership")
        second = _enqueue(env, queue, 0, 0, "another-record-key")
        time.sleep(5)  # the re-run still runs (8 s): the second task is decided meanwhile
        assert all(r[2] != second for r in _runs(log)), "a second task of the unique key ran beside the re-run"
        wait_for(lambda: sum(1 for r in _runs(log) if r[0] == "end" and r[2] == holder) == 2, 60, "the re-run")
    finally:
        worker.send_signal(signal.SIGCONT)
        _stop(worker)
    assert {r[2] for r in _runs(log)} == {holder}
