"""The CLI as a user types it: produce, queue, consume errors, demo; bad input is one clear line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from kqueue.core import names
from kqueue.core.codec import SOE_MAGIC
from kqueue.core.headers import header_map
from tests.support.kafka import Kafka, unique

ROOT = Path(__file__).resolve().parents[2]


def kq(bootstrap: str, *args: str, stdin: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KQUEUE_BOOTSTRAP_SERVERS": bootstrap}
    return subprocess.run([sys.executable, "-m", "kqueue", *args], input=stdin, capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=timeout, check=False)


def test_produce_json_with_schema_prints_id_and_writes_avro(kafka: Kafka) -> None:
    queue = unique("cli")
    result = kq(kafka.bootstrap, "produce", queue, "--type", "send_email", "--key", "user-1",
                "--json", '{"to": "a@b.c", "tags": ["x"]}', "--priority", "high")
    assert result.returncode == 0, result.stderr
    task_id = result.stdout.strip()
    assert len(task_id) == 36
    [msg] = kafka.read_all(names.lane_topic(queue, "high"), expected=1)
    headers = header_map(msg.headers())
    assert headers[names.H_ID] == task_id and headers[names.H_TYPE] == "send_email"
    assert headers[names.H_CONTENT_TYPE] == "avro" and msg.value()[:2] == SOE_MAGIC
    assert msg.key() == b"user-1"


def test_produce_file_all_or_nothing(kafka: Kafka, tmp_path: Path) -> None:
    queue = unique("clifile")
    good = tmp_path / "good.jsonl"
    good.write_text("\n".join(json.dumps({"n": i}) for i in range(300)) + "\n")
    result = kq(kafka.bootstrap, "produce", queue, "--type", "untyped_job", "--file", str(good))
    assert result.returncode == 0, result.stderr
    assert "enqueued 300 untyped_job task(s)" in result.stdout
    assert len(kafka.read_all(queue, expected=300)) == 300

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"to": "a@b.c"}\n{"to": "d@e.f"}\n{broken\n')
    queue2 = unique("clibad")
    result = kq(kafka.bootstrap, "produce", queue2, "--type", "send_email", "--file", str(bad))
    assert result.returncode == 2
    assert "line 3 is not valid JSON" in result.stderr and "Traceback" not in result.stderr
    # A payload that parses but does not fit the Avro schema: also refused before anything is sent.
    wrong = tmp_path / "wrong.jsonl"
    wrong.write_text('{"to": "a@b.c"}\n{"to": 5}\n')
    result = kq(kafka.bootstrap, "produce", queue2, "--type", "send_email", "--file", str(wrong))
    assert result.returncode == 2 and "does not match Avro schema" in result.stderr
    assert queue2 not in kafka.admin().list_topics(timeout=10).topics  # nothing half-sent


def test_produce_from_stdin(kafka: Kafka) -> None:
    queue = unique("clistdin")
    lines = "\n".join(json.dumps({"n": i}) for i in range(5))
    result = kq(kafka.bootstrap, "produce", queue, "--type", "t", "-", stdin=lines)
    assert result.returncode == 0, result.stderr
    assert len(kafka.read_all(queue, expected=5)) == 5


def test_bad_arguments_are_one_line_errors(kafka: Kafka) -> None:
    cases = [
        (("produce", "q", "--type", "t", "--json", "{nope"), "--json is not valid JSON"),
        (("produce", "q", "--type", "t"), "exactly one of --json, --file or -"),
        (("produce", "q", "--type", "t", "--json", "{}", "--priority", "urgent"), "unknown priority 'urgent'"),
        (("consume", "--app", "no_such_module:app", "--group", "g"), "cannot import 'no_such_module'"),
        (("consume", "--app", "nocolon", "--group", "g"), "--app must look like package.module:app"),
        (("consume", "--app", "tests.apps.recorder:app", "--group", "g", "--queue", "nope"), "no tasks on queue"),
        (("queue", "describe", unique("missing")), "does not exist"),
    ]
    for args, message in cases:
        result = kq(kafka.bootstrap, *args)
        assert result.returncode != 0, args
        assert message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr, args


def test_queue_create_list_describe(kafka: Kafka) -> None:
    queue = unique("cliq")
    created = kq(kafka.bootstrap, "queue", "create", queue, "--partitions", "4")
    assert created.returncode == 0 and "created 5 topic(s)" in created.stdout  # Q, Q.high, Q.low, Q.dlq, Q.dedup
    again = kq(kafka.bootstrap, "queue", "create", queue)
    assert "created 0 topic(s), 5 already existed" in again.stdout
    kq(kafka.bootstrap, "produce", queue, "--type", "t", "--json", "{}")
    listing = kq(kafka.bootstrap, "queue", "list")
    assert listing.returncode == 0 and queue in listing.stdout
    described = kq(kafka.bootstrap, "queue", "describe", queue, "--group", unique("g"))
    assert described.returncode == 0, described.stderr
    row = next(line for line in described.stdout.splitlines() if line.startswith("│") and f" {queue} " in line)
    assert [c.strip() for c in row.split("│")[2:5]] == ["4", "1", "1"]  # partitions, records, group lag


def test_demo_runs_tasks_through_kqueue_consume(kafka: Kafka) -> None:
    result = kq(kafka.bootstrap, "demo", "--tasks", "200", timeout=180)
    assert result.returncode == 0, result.stderr + result.stdout
    assert "kqueue demo" in result.stdout and "200 of 200 tasks settled" in result.stdout
    rows = [[c.strip() for c in line.split("│")[1:-1]] for line in result.stdout.splitlines() if line.startswith("│")]
    all_row = next(row for row in rows if row[0] == "all")
    enqueued, completed, retried, dead = (int(c) for c in all_row[1:5])
    assert enqueued == 200 and completed + dead == 200  # every task counted, read back from Kafka
    assert retried > 0 and dead > 0  # some recovered through the delay tiers, some ended in the DLQ
    # The worker's own metrics, scraped before it stopped, agree with what was read back from Kafka.
    assert "worker metrics (served at http://127.0.0.1:" in result.stdout
    figures = {row[0]: row[1] for row in rows if row and row[0].startswith("kqueue_tasks_total")}
    assert figures['kqueue_tasks_total{outcome="completed"}'] == str(completed)
    assert figures['kqueue_tasks_total{outcome="dead_lettered"}'] == str(dead)
    # The demo's dashboard and status view ran alongside, and counted the same.
    flat = " ".join(result.stdout.split())  # undo rich's line wrapping
    assert "dashboard: http://127.0.0.1:" in flat
    assert f"says: {completed} completed, {dead} failed" in flat


def test_produce_help_says_what_an_idempotency_key_does() -> None:
    result = kq("localhost:9", "produce", "--help")  # help only: no broker is contacted
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.replace("│", " ").split())  # undo rich's box and line wrapping
    assert "--idempotency-key" in text and "kq-idempotency-key header" in text
    assert "the same task id" in text and "runs once within its type's window" in text


def test_an_unreachable_broker_is_one_line_without_the_clients_log_lines() -> None:
    result = kq("127.0.0.1:1", "produce", "q", "--type", "t", "--json", "{}", timeout=60)
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr  # no raw librdkafka lines
    assert result.stderr.startswith("error:") and "rdkafka" not in result.stderr
    # kqueue's own error, naming the cluster and what was being done, not the client's exception
    assert "DeliveryError: Kafka at 127.0.0.1:1 did not answer within 10s to set up queue 'q'" in result.stderr
    assert "KafkaException" not in result.stderr
