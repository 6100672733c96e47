"""Operations through a real broker and the CLI an operator runs: `kqueue consume --metrics-port`
serves metrics whose counts equal what ran, /livez and /readyz, JSON lifecycle logs with the task's
fields and no payload; `kqueue stats` shows the lag; with --processes one scrape covers every child."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

import kqueue
from tests.support.http import free_port, get
from tests.support.kafka import Kafka, unique
from tests.support.worker import wait_for

ROOT = Path(__file__).resolve().parents[2]
SECRET_IN_PAYLOAD = "payload-text-that-must-not-be-logged"


def samples(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    status, text = get(port, "/metrics")
    if status != 200:
        return {}
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def total(values: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(v for (n, ls), v in values.items() if n == name and wanted <= ls)


def kq(bootstrap: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KQUEUE_BOOTSTRAP_SERVERS": bootstrap}
    return subprocess.run([sys.executable, "-m", "kqueue", *args], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=60, check=False)


def consume(bootstrap: str, queue: str, group: str, port: int, stderr_file: Path,
            *extra: str, port_by_env: bool = False) -> subprocess.Popen[bytes]:
    env = {**os.environ, "KQUEUE_BOOTSTRAP_SERVERS": bootstrap, "KQ_TEST_QUEUE": queue}
    port_args = ["--metrics-port", str(port)]
    if port_by_env:  # as the chart or a shell profile would set it
        env["KQUEUE_METRICS_PORT"], port_args = str(port), []
    with stderr_file.open("wb") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "kqueue", "consume", "--app", "tests.apps.observed:app", "--group", group,
             *port_args, "--metrics-host", "127.0.0.1", *extra],
            env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def enqueue(bootstrap: str, queue: str, payloads: list[dict[str, object]]) -> None:
    app = kqueue.App("observed-producer", bootstrap, delay_tiers=("1s",))

    @app.task(queue=queue, name="work", max_attempts=3)  # the producer stamps kq-max-attempts
    def work(payload: dict[str, object]) -> None: ...

    for i, payload in enumerate(payloads):
        work.enqueue(payload, key=f"key-{i % 7}")
    app.flush()


def test_metrics_health_logs_and_stats_match_what_ran(kafka: Kafka, tmp_path: Path) -> None:
    queue, group = unique("ops"), unique("ops-group")
    # 20 pass at once, 6 fail once then pass, 4 always fail (3 attempts each, then the DLQ).
    payloads: list[dict[str, object]] = [{"n": i, "note": SECRET_IN_PAYLOAD} for i in range(20)]
    payloads += [{"n": 20 + i, "fail_attempts": 1} for i in range(6)]
    payloads += [{"n": 26 + i, "fail": True} for i in range(4)]
    enqueue(kafka.bootstrap, queue, payloads)

    before = kq(kafka.bootstrap, "stats", queue, "--group", group, "--json")
    assert before.returncode == 0, before.stderr
    depth = json.loads(before.stdout)
    assert depth["lag"] == 30 and depth["dlq_records"] == 0
    assert [lane["lag"] for lane in depth["lanes"] if lane["lane"] == "normal"] == [30]

    port = free_port()
    log_file = tmp_path / "worker.log"
    proc = consume(kafka.bootstrap, queue, group, port, log_file, "--log-format", "json", "--concurrency", "4")
    try:
        settled = lambda: total(samples(port), "kqueue_tasks_total")  # noqa: E731
        wait_for(lambda: settled() >= 26 + 14 + 4, 90, "every attempt settled")
        time.sleep(1.0)  # anything extra (a double count) would show by now
        values = samples(port)
        assert total(values, "kqueue_tasks_total", outcome="completed", queue=queue, task="work") == 26
        assert total(values, "kqueue_tasks_total", outcome="retried", queue=queue, task="work") == 14
        assert total(values, "kqueue_tasks_total", outcome="dead_lettered", queue=queue, task="work") == 4
        assert total(values, "kqueue_retries_total", queue=queue, tier="1s") == 14
        assert total(values, "kqueue_dead_letters_total", queue=queue) == 4
        assert total(values, "kqueue_task_run_seconds_count", queue=queue) == 44  # every attempt ran once
        assert total(values, "kqueue_task_latency_seconds_count", queue=queue) == 30  # each task finished once
        assert total(values, "kqueue_delay_moves_total", queue=queue, outcome="delivered") == 14
        assert total(values, "kqueue_worker_concurrency") == 4
        assert total(values, "kqueue_rebalance_events_total", kind="assigned") > 0
        assert total(values, "kqueue_commit_seconds_count") > 0
        assert total(values, "kqueue_partitions_owned", queue=queue) > 0

        assert get(port, "/livez")[0] == 200
        wait_for(lambda: get(port, "/readyz")[0] == 200, 30, "/readyz to answer 200")
        assert get(port, "/nothing")[0] == 404
        # Lag read from Kafka every few seconds: it comes down from 30 to nothing (a partition ending
        # with a transaction's commit marker is not a task behind).
        wait_for(lambda: total(samples(port), "kqueue_queue_lag", queue=queue, lane="normal") == 0, 30,
                 "the lag gauge to come down to 0")
    finally:
        stop(proc)
    assert proc.returncode == 0

    after = json.loads(kq(kafka.bootstrap, "stats", queue, "--group", group, "--json").stdout)
    # Nothing left: partitions whose last write was a transaction end with its commit marker, which
    # no consumer reads; stats counts that offset as the end, not as a task left.
    assert after["dlq_records"] == 4 and after["lag"] == 0
    # --watch: one object per refresh, the later ones with rates (nothing moves now: zero).
    watch = subprocess.Popen([sys.executable, "-m", "kqueue", "stats", queue, "--group", group, "--watch", "--json",
                              "--interval", "0.5"], stdout=subprocess.PIPE, text=True, cwd=ROOT,
                             env={**os.environ, "KQUEUE_BOOTSTRAP_SERVERS": kafka.bootstrap})
    try:
        assert watch.stdout is not None
        first, second = json.loads(watch.stdout.readline()), json.loads(watch.stdout.readline())
    finally:
        watch.kill()
        watch.wait()
    assert first["rates"] == {} and second["rates"] == {"settled_per_s": 0.0, "dead_letters_per_s": 0.0}
    assert second["dlq_records"] == 4  # carried over: the DLQ did not grow

    lines = [json.loads(line) for line in log_file.read_text().splitlines() if line.startswith("{")]
    tasks = [line for line in lines if line.get("logger") == "kqueue.task"]
    by_message: dict[str, int] = {}
    for line in tasks:
        by_message[line["message"]] = by_message.get(line["message"], 0) + 1
    # At the default level a completion has no line of its own: the summary lines count them.
    assert by_message == {"task retried": 14, "task dead-lettered": 4}
    summaries = [line for line in lines if line.get("logger") == "kqueue.summary"]
    assert [sum(line[k] for line in summaries) for k in ("completed", "retried", "dead_lettered")] == [26, 14, 4]
    for line in tasks:
        assert line["queue"] == queue and line["task"] == "work" and line["key"].startswith("key-")
        assert len(line["task_id"]) == 36 and line["attempt"] in (1, 2, 3) and line["duration_s"] >= 0
    retried = [line for line in tasks if line["message"] == "task retried"]
    assert all(line["destination"] == f"{queue}.delay.1s" and line["error_type"] == "RuntimeError" for line in retried)
    assert SECRET_IN_PAYLOAD not in log_file.read_text()


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def test_one_scrape_covers_every_process_and_livez_names_a_stuck_one(kafka: Kafka, tmp_path: Path) -> None:
    queue, group = unique("opsmp"), unique("opsmp-group")
    enqueue(kafka.bootstrap, queue, [{"n": i} for i in range(60)])
    port = free_port()
    # The port by variable: the children inherit the environment, and must not take the port too.
    proc = consume(kafka.bootstrap, queue, group, port, tmp_path / "sup.log", "--processes", "2",
                   "--liveness-timeout", "3", "--log-level", "WARNING", port_by_env=True)
    try:
        wait_for(lambda: total(samples(port), "kqueue_tasks_total", outcome="completed") >= 60, 90,
                 "60 completions in one scrape")
        time.sleep(1.0)
        values = samples(port)
        assert total(values, "kqueue_tasks_total", outcome="completed", queue=queue) == 60
        assert total(values, "kqueue_worker_concurrency") == 16  # two children of 8, summed
        wait_for(lambda: get(port, "/readyz")[0] == 200, 60, "both children ready")
        assert get(port, "/livez")[0] == 200

        children = _children(proc.pid)
        assert len(children) == 2
        assert "cannot serve metrics" not in (tmp_path / "sup.log").read_text()
        os.kill(children[0], signal.SIGSTOP)  # its loop stops turning; the supervisor still answers
        try:
            wait_for(lambda: get(port, "/livez")[0] == 503, 15, "/livez to fail")
            status, body = get(port, "/livez")
            assert status == 503 and f"pid {children[0]}" in body
        finally:
            os.kill(children[0], signal.SIGCONT)
        wait_for(lambda: get(port, "/livez")[0] == 200, 15, "/livez to recover")
    finally:
        stop(proc)
    assert proc.returncode == 0


def test_bad_operations_flags_are_one_line_errors(kafka: Kafka) -> None:
    result = kq(kafka.bootstrap, "consume", "--app", "tests.apps.observed:app", "--group", "g", "--log-format", "xml")
    assert result.returncode == 2 and "--log-format must be text or json" in result.stderr
    assert "Traceback" not in result.stderr
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = kq(kafka.bootstrap, "consume", "--app", "tests.apps.observed:app", "--group", "g",
                    "--metrics-port", str(port), "--metrics-host", "127.0.0.1")
    assert result.returncode == 2 and f"cannot serve metrics on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr
    missing = kq(kafka.bootstrap, "stats", unique("absent"), "--group", "g")
    assert missing.returncode == 1 and "does not exist" in missing.stderr and "Traceback" not in missing.stderr
