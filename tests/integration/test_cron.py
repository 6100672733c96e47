"""Cron through a real broker: every tick exactly once across leader deaths, catch-up after an
outage, `kqueue cron list`, and bad schedules refused before anything runs."""

from __future__ import annotations

import json
import math
import os
import signal
import time
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer

from kqueue.cron.topic import ensure_cron_topics, transactional_id
from kqueue.sdk.app import App
from kqueue.transport.config import producer_config
from tests.support.cron import CronSetup, beat_of, live_leader, stop
from tests.support.kafka import Kafka, unique
from tests.support.worker import wait_for


def setup(kafka: Kafka, tmp_path: Path, catch_up: str | None = None) -> CronSetup:
    return CronSetup(kafka.bootstrap, unique("cronapp"), unique("cronq"), tmp_path / "ran.log", catch_up)


@pytest.mark.slow
def test_every_tick_runs_exactly_once_while_leaders_are_killed(kafka: Kafka, tmp_path: Path) -> None:
    cron = setup(kafka, tmp_path)
    output = (tmp_path / "processes.log").open("wb")
    worker = cron.worker(unique("g"), "--no-cron", output=output)
    schedulers = {p.pid: p for p in (cron.scheduler(output) for _ in range(3))}
    killed: list[int] = []
    try:
        wait_for(lambda: len(cron.ran()) >= 3, timeout=60, what="the first ticks to run")
        for _ in range(2):
            time.sleep(3)  # a few ticks under this leader
            leader = None

            def found() -> bool:
                nonlocal leader
                leader = live_leader(cron.topic(), set(schedulers))
                return leader is not None

            wait_for(found, timeout=30, what="a leader's beat")
            assert leader is not None
            os.kill(leader.pid, signal.SIGKILL)  # mid-tick or between ticks: whatever the moment is
            schedulers.pop(leader.pid).wait(10)
            killed.append(leader.pid)
            wait_for(lambda: live_leader(cron.topic(), set(schedulers)) is not None, timeout=30,
                     what="another scheduler to take the lead")
            taken_over = max(cron.ran())
            wait_for(lambda at=taken_over: max(cron.ran()) > at + 2, timeout=30,
                     what="ticks after the hand-over")
        time.sleep(3)
        stop(*schedulers.values())
        last_fired = cron.topic().progress["tick"].fired
        assert last_fired is not None
        wait_for(lambda: last_fired in cron.ran(), timeout=30, what="the worker to run the last fired tick")
        time.sleep(1)  # a doubled tick would run about now
    finally:
        stop(*schedulers.values(), worker)
        output.close()
    ticks = cron.ran()
    print(f"cron exactly-once: {len(ticks)} ticks ran, from {min(ticks)} to {max(ticks)}, "
          f"leaders killed: {len(killed)}")
    assert len(killed) == 2
    assert len(ticks) == len(set(ticks)), "a tick ran twice"
    assert sorted(ticks) == list(range(min(ticks), max(ticks) + 1)), "a tick is missing"
    assert max(ticks) == last_fired
    assert len(ticks) >= 20


@pytest.mark.parametrize("catch_up", ["true", "false"])
def test_after_an_outage_the_latest_missed_tick_fires_once_or_none(kafka: Kafka, tmp_path: Path,
                                                                   catch_up: str) -> None:
    cron = setup(kafka, tmp_path, catch_up)
    output = (tmp_path / "processes.log").open("wb")
    group = unique("g")
    first = cron.worker(group, output=output)  # `kqueue consume` runs the scheduler by default
    try:
        wait_for(lambda: len(cron.ran()) >= 2, timeout=60, what="ticks from the first worker")
    finally:
        stop(first)
    before = cron.topic()
    last_fired, stopped = before.progress["tick"].fired, beat_of(before, first.pid)
    assert last_fired is not None and stopped is not None and stopped.stopped
    time.sleep(4)  # the outage: no scheduler lives, ticks go by
    second = cron.worker(group, output=output)
    try:
        wait_for(lambda: (b := beat_of(cron.topic(), second.pid)) is not None and b.leader, timeout=60,
                 what="the second worker's scheduler to lead")
        since = beat_of(cron.topic(), second.pid).since_ms / 1000  # type: ignore[union-attr]
        wait_for(lambda: max(cron.ran()) >= since + 2, timeout=30, what="ticks of the second worker")
    finally:
        stop(second)
        output.close()
    ticks = cron.ran()
    assert len(ticks) == len(set(ticks)), "a tick ran twice"
    # ticks the first scheduler lived through but had not fired when it stopped (at most one) fire late
    lived_through = set(range(last_fired + 1, math.floor(stopped.at_ms / 1000) + 1))
    latest_missed = math.ceil(since) - 1
    outage = set(range(max(lived_through, default=last_fired) + 1, latest_missed + 1))
    assert len(outage) >= 3
    ran_in_outage = outage & set(ticks)
    assert ran_in_outage == ({latest_missed} if catch_up == "true" else set())
    after = [t for t in ticks if t > latest_missed]
    assert after == list(range(latest_missed + 1, max(ticks) + 1))  # the second one's own life: all of it
    assert lived_through <= set(ticks)


def test_cron_list_shows_next_fire_last_fired_and_the_leader(kafka: Kafka, tmp_path: Path) -> None:
    cron = setup(kafka, tmp_path)
    asked_at = time.time()
    before = cron.cli("cron", "list", "--app", "tests.apps.cron_app:app", "--json")
    assert before.returncode == 0, before.stderr
    [row] = json.loads(before.stdout)["schedules"]
    assert row["last_fired"] is None and row["cron"] == "* * * * * *" and row["catch_up"] is True
    assert asked_at < row["next_fire"] <= time.time() + 1
    scheduler = cron.scheduler()
    try:
        wait_for(lambda: (p := cron.topic().progress.get("tick")) is not None and p.fired is not None,
                 timeout=60, what="a tick to fire")
        listed = cron.cli("cron", "list", "--app", "tests.apps.cron_app:app", "--json")
        table = cron.cli("cron", "list", "--app", "tests.apps.cron_app:app", COLUMNS="160")
    finally:
        stop(scheduler)
    shown = json.loads(listed.stdout)
    assert shown["schedules"][0]["last_fired"] >= row["next_fire"]
    assert [(s["pid"], s["leader"]) for s in shown["schedulers"]] == [(scheduler.pid, True)]
    assert table.returncode == 0, table.stderr
    assert f"cron schedules of {cron.app_name}" in table.stdout
    assert "* * * * * *" in table.stdout and "UTC" in table.stdout
    assert f"schedulers alive: 1; leader pid {scheduler.pid}" in table.stdout


@pytest.mark.parametrize(("variable", "value", "named"), [
    ("KQ_CRON_EXPR", "*/0 * * * *", "'*/0 * * * *'"),
    ("KQ_CRON_EXPR", "* * * *", "'* * * *'"),
    ("KQ_CRON_TZ", "Europe/Atlantis", "'Europe/Atlantis'"),
    ("KQ_CRON_CATCH_UP", "sometimes", "'sometimes'"),
])
def test_bad_schedules_are_one_line_errors_before_anything_runs(tmp_path: Path, variable: str, value: str,
                                                               named: str) -> None:
    cron = CronSetup("127.0.0.1:1", unique("cronapp"), unique("cronq"), tmp_path / "ran.log")  # never reached
    for command in (("cron", "list"), ("cron", "run"), ("consume", "--group", "g")):
        result = cron.cli(*command, "--app", "tests.apps.cron_app:app", **{variable: value})
        assert result.returncode == 2, result.stderr
        assert named in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_a_leader_stalled_mid_tick_is_fenced_and_its_tick_fires_once(kafka: Kafka, tmp_path: Path) -> None:
    """A leader that froze inside a tick's transaction (a GC pause, SIGSTOP) and wakes after another
    scheduler took over cannot commit: the new leader's init_transactions fenced it and aborted its
    transaction, and fired the tick itself."""
    cron = setup(kafka, tmp_path)
    app = App(cron.app_name, kafka.bootstrap)

    @app.cron("* * * * * *", payload={"from": "cron"}, name="tick")
    @app.task(queue=cron.queue)
    def tick(payload: dict[str, object]) -> None: ...

    ensure_cron_topics(app)
    entry = app.cron_entries["tick"]
    stalled_tick = int(time.time()) + 8  # due after the new leader has taken over
    zombie = Producer(producer_config(kafka.bootstrap, **{"transactional.id": transactional_id(app)}))
    zombie.init_transactions(30)
    zombie.begin_transaction()
    topic, key, value, headers = entry.record(stalled_tick, "")
    zombie.produce(topic, value=value, key=key, headers=headers)
    zombie.flush(10)  # the tick's task is in the log, uncommitted
    output = (tmp_path / "processes.log").open("wb")
    worker, scheduler = cron.worker(unique("g"), "--no-cron", output=output), cron.scheduler(output)
    try:
        wait_for(lambda: (b := beat_of(cron.topic(), scheduler.pid)) is not None and b.leader, timeout=60,
                 what="the scheduler to lead")
        with pytest.raises(KafkaException) as fenced:
            zombie.commit_transaction(30)
        assert fenced.value.args[0].code() in (KafkaError._FENCED, KafkaError.PRODUCER_FENCED,
                                               KafkaError.INVALID_PRODUCER_EPOCH), fenced.value
        wait_for(lambda: max(cron.ran(), default=0) >= stalled_tick + 1, timeout=60, what="ticks past the stalled one")
    finally:
        stop(scheduler)
        time.sleep(1)
        stop(worker)
        output.close()
    ticks = cron.ran()
    assert ticks.count(stalled_tick) == 1
    assert len(ticks) == len(set(ticks)) and sorted(ticks) == list(range(min(ticks), max(ticks) + 1))
