"""Concurrent `dlq replay` runs of one queue: each dead letter is enqueued once, the loser says so."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kqueue
from kqueue.control.dlq import DeadLetter, ReplayConflict, ReplayReport, replay
from kqueue.core import names
from kqueue.core.headers import header_map
from tests.integration.test_cli import ROOT
from tests.support.kafka import Kafka, unique
from tests.support.worker import ThreadedWorker, wait_for

Outcome = ReplayReport | BaseException


def make_dead_letters(kafka: Kafka, count: int) -> tuple[str, list[str]]:
    """A queue holding `count` committed dead letters (a task that always rejects); returns their ids."""
    queue = unique("dlqrace")
    app = kqueue.App("dlqrace", kafka.bootstrap, partitions=2)

    @app.task(queue=queue)
    def doomed(payload: dict[str, Any]) -> None:
        raise kqueue.Reject(f"doomed {payload['n']}")

    ids = [doomed.enqueue({"n": i}, key=f"k{i}") for i in range(count)]
    app.flush()
    with ThreadedWorker(app, group=unique("g")) as worker:
        wait_for(lambda: worker.worker.counts.dead_lettered == count, what=f"{count} dead letters")
        worker.stop()  # the dead letters and their `failed` events are committed; nothing re-consumes replays
    return queue, ids


def replayed_on_main(kafka: Kafka, queue: str, originals: int, replays: int) -> Counter[str]:
    """kq-id -> how many replayed records (kq-replay-of) the main topic holds."""
    records = kafka.read_all(names.main_topic(queue), expected=originals + replays)
    return Counter(header_map(m.headers())[names.H_ID] for m in records
                   if names.H_REPLAY_OF in header_map(m.headers()))


def start(target: Callable[[], ReplayReport]) -> tuple[threading.Thread, list[Outcome]]:
    outcome: list[Outcome] = []

    def main() -> None:
        try:
            outcome.append(target())
        except BaseException as exc:  # handed to the test thread
            outcome.append(exc)

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    return thread, outcome


def finish(thread: threading.Thread, outcome: list[Outcome]) -> Outcome:
    thread.join(120)
    assert not thread.is_alive(), "replay did not finish"
    return outcome[0]


def test_two_replays_at_once_enqueue_each_dead_letter_once(kafka: Kafka) -> None:
    queue, ids = make_dead_letters(kafka, 3)
    barrier = threading.Barrier(2, timeout=60)

    def both_selected(letters: list[DeadLetter]) -> None:
        assert len(letters) == 3  # both runs read before either wrote: the race the fence must settle
        barrier.wait()

    runs = [start(lambda: replay(kafka.bootstrap, queue, everything=True, on_selected=both_selected))
            for _ in range(2)]
    outcomes = [finish(*run) for run in runs]

    assert replayed_on_main(kafka, queue, len(ids), len(ids)) == Counter(ids)  # each exactly once
    unexpected = [o for o in outcomes if isinstance(o, BaseException) and not isinstance(o, ReplayConflict)]
    if unexpected:
        raise unexpected[0]
    reports = [o for o in outcomes if isinstance(o, ReplayReport)]
    conflicts = [o for o in outcomes if isinstance(o, ReplayConflict)]
    assert len(reports) == 1 and len(conflicts) == 1, outcomes
    assert sorted(letter.task_id for letter in reports[0].replayed) == sorted(ids)
    assert "another replay of queue" in str(conflicts[0]) and "\n" not in str(conflicts[0])
    again = replay(kafka.bootstrap, queue, everything=True)  # the fenced run left nothing half-done
    assert again.replayed == [] and len(again.skipped) == 3


def test_dry_run_does_not_fence_a_real_replay(kafka: Kafka) -> None:
    queue, ids = make_dead_letters(kafka, 2)
    selected, release = threading.Event(), threading.Event()

    def hold(letters: list[DeadLetter]) -> None:
        selected.set()
        assert release.wait(60)

    run = start(lambda: replay(kafka.bootstrap, queue, everything=True, on_selected=hold))
    assert selected.wait(60)
    dry = replay(kafka.bootstrap, queue, everything=True, dry_run=True)
    assert sorted(letter.task_id for letter in dry.replayed) == sorted(ids)
    release.set()
    outcome = finish(*run)
    assert isinstance(outcome, ReplayReport), outcome  # not fenced by the dry run
    assert len(outcome.replayed) == 2
    assert replayed_on_main(kafka, queue, len(ids), len(ids)) == Counter(ids)


# `kqueue dlq replay` as a user runs it, held (through the replay's seam) after it chose its letters.
HELD_CLI = """
import sys, time
from pathlib import Path
from kqueue.cli.main import run
from kqueue.control import dlq

signal = Path(sys.argv.pop(1))
real = dlq.replay

def hold(letters):
    signal.with_suffix(".ready").touch()
    while not signal.with_suffix(".go").exists():
        time.sleep(0.05)

dlq.replay = lambda *args, **kwargs: real(*args, on_selected=hold, **kwargs)
sys.argv[0] = "kqueue"
run()
"""


def test_cli_replay_fenced_by_another_run_fails_in_one_line(kafka: Kafka, tmp_path: Path) -> None:
    queue, ids = make_dead_letters(kafka, 2)
    signal = tmp_path / "cli"
    env = {**os.environ, "KQUEUE_BOOTSTRAP_SERVERS": kafka.bootstrap}
    cli = subprocess.Popen([sys.executable, "-c", HELD_CLI, str(signal), "dlq", "replay", queue, "--all"],
                           env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: signal.with_suffix(".ready").exists() or cli.poll() is not None, what="CLI to select")
        assert cli.poll() is None, cli.communicate()
        other = replay(kafka.bootstrap, queue, everything=True)  # starts later, fences the CLI, commits
        assert sorted(letter.task_id for letter in other.replayed) == sorted(ids)
        signal.with_suffix(".go").touch()
        out, err = cli.communicate(timeout=120)
    finally:
        if cli.poll() is None:
            cli.kill()
    assert cli.returncode == 1, (out, err)
    # one line: the Kafka client's own log lines about the fencing stay out of a one-shot command
    errors = err.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("error:"), err
    assert errors[0].startswith(f"error: another replay of queue '{queue}'") and "run it again" in errors[0]
    assert "replayed" not in out
    assert replayed_on_main(kafka, queue, len(ids), len(ids)) == Counter(ids)
