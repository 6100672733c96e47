"""`kqueue dlq list/show/replay/purge` against real dead letters, as an operator would use them."""

from __future__ import annotations

import json
import threading
from typing import Any

import kqueue
from kqueue.core import names
from kqueue.core.headers import header_map
from tests.integration.test_cli import kq
from tests.support.kafka import Kafka, unique
from tests.support.worker import ThreadedWorker, wait_for


def test_dead_letters_listed_shown_replayed_once_and_purged(kafka: Kafka) -> None:
    queue = unique("dlqcli")
    app = kqueue.App("dlqcli", kafka.bootstrap, partitions=2)
    healthy = threading.Event()
    done: list[str] = []

    @app.task(queue=queue, max_attempts=1)
    def alpha(payload: dict[str, Any], ctx: kqueue.TaskContext) -> None:
        if not healthy.is_set():
            raise ConnectionError(f"alpha {payload['n']} could not connect")
        done.append(ctx.task_id)

    @app.task(queue=queue, max_attempts=1)
    def beta(payload: dict[str, Any]) -> None:
        raise ValueError("beta is broken")

    alpha_ids = [alpha.enqueue({"n": i}, key=f"k{i}") for i in range(2)]
    beta_ids = [beta.enqueue({"n": i}, key=f"k{i}") for i in range(2)]
    app.flush()
    with ThreadedWorker(app, group=unique("g")) as worker:
        wait_for(lambda: worker.worker.counts.dead_lettered == 4, what="four dead letters")

        listing = kq(kafka.bootstrap, "dlq", "list", queue, "--json")
        assert listing.returncode == 0, listing.stderr
        rows = [json.loads(line) for line in listing.stdout.splitlines()]
        assert sorted(r["task_id"] for r in rows) == sorted(alpha_ids + beta_ids)
        assert {r["type"] for r in rows} == {"alpha", "beta"} and all(r["attempts"] == 1 for r in rows)
        assert any("could not connect" in r["error"] for r in rows)
        table = kq(kafka.bootstrap, "dlq", "list", queue)
        assert "ConnectionError" in table.stdout and "dead letters of" in table.stdout

        shown = kq(kafka.bootstrap, "dlq", "show", queue, beta_ids[0])
        assert shown.returncode == 0 and "beta is broken" in shown.stdout and "kq-error-trace" in shown.stdout
        assert '"n": 0' in shown.stdout or '"n": 1' in shown.stdout

        dry = kq(kafka.bootstrap, "dlq", "replay", queue, "--type", "alpha", "--dry-run")
        assert "would replay 2 dead letter(s)" in dry.stdout
        healthy.set()  # the outage is over
        first = kq(kafka.bootstrap, "dlq", "replay", queue, "--type", "alpha")
        assert first.returncode == 0 and "replayed 2 dead letter(s)" in first.stdout, first.stderr
        again = kq(kafka.bootstrap, "dlq", "replay", queue, "--type", "alpha")
        assert "replayed 0 dead letter(s)" in again.stdout and "2 already replayed" in again.stdout
        wait_for(lambda: sorted(done) == sorted(alpha_ids), what="replayed tasks to complete")
        worker.stop()

    replayed = [m for m in kafka.read_all(queue, expected=6) if names.H_REPLAY_OF in header_map(m.headers())]
    assert len(replayed) == 2  # replayed once, although asked twice
    for msg in replayed:
        headers = header_map(msg.headers())
        assert headers[names.H_ATTEMPT] == "1" and headers[names.H_ID] in alpha_ids
        assert names.H_ERROR_TYPE not in headers
        assert msg.key() in (b"k0", b"k1")

    pending = kq(kafka.bootstrap, "dlq", "list", queue, "--json")
    assert sorted(json.loads(line)["task_id"] for line in pending.stdout.splitlines()) == sorted(beta_ids)
    everything = kq(kafka.bootstrap, "dlq", "list", queue, "--json", "--all")
    assert len(everything.stdout.splitlines()) == 4

    assert "purged 0 dead letter(s)" in kq(kafka.bootstrap, "dlq", "purge", queue, "--before",
                                           "2001-01-01T00:00:00Z").stdout
    purged = kq(kafka.bootstrap, "dlq", "purge", queue, "--all")
    assert "purged 4 dead letter(s)" in purged.stdout, purged.stderr
    assert kq(kafka.bootstrap, "dlq", "list", queue, "--json").stdout.strip() == ""


def test_dlq_bad_arguments(kafka: Kafka) -> None:
    for args, message in [
        (("dlq", "replay", "q"), "say what to replay"),
        (("dlq", "purge", "q"), "exactly one of --all or --before"),
        (("dlq", "purge", "q", "--before", "yesterday"), "is not an ISO time"),
        (("dlq", "list", unique("none")), "has no dead-letter topic"),
    ]:
        result = kq(kafka.bootstrap, *args)
        assert result.returncode != 0 and message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr
