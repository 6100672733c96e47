"""The task lifecycle through a real broker, `kqueue api` (a subprocess) and a worker: every status a
task can have, as the SDK, the REST API and the CLI report it; counted so that nothing is lost."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from kqueue import App
from kqueue.sdk.status_client import TaskNotFound
from kqueue.transport.config import producer_config
from tests.apps.lifecycle import make_app
from tests.support.api import ROOT, ApiProcess
from tests.support.kafka import Kafka, unique
from tests.support.worker import ThreadedWorker, wait_for

TOKEN = "s3cret-token"
FINISHED = ("completed", "failed", "cancelled")


class Setup:
    def __init__(self, app: App, api: ApiProcess, queue: str, db: Path) -> None:
        self.app, self.api, self.queue, self.db = app, api, queue, db

    def status(self, task_id: str) -> dict[str, Any]:
        code, body = self.api.request("GET", f"/api/v1/tasks/{task_id}")
        assert code == 200, (code, body)
        return dict(body)

    def post(self, body: dict[str, Any]) -> str:
        code, answer = self.api.request("POST", "/api/v1/tasks", body)
        assert code == 202, (code, answer)
        assert answer["status"] == "queued"
        return str(answer["task_id"])

    def watch(self, task_id: str, until: tuple[str, ...] = FINISHED, timeout: float = 60) -> list[str]:
        """The statuses seen while polling (every 50 ms) until one of `until`."""
        self.app.flush()  # an SDK enqueue returns before Kafka has the task: known to the view once it has
        seen: list[str] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.status(task_id)["status"]
            if not seen or seen[-1] != status:
                seen.append(status)
            if status in until:
                return seen
            time.sleep(0.05)
        raise AssertionError(f"{task_id} never reached {until}: saw {seen}")


@pytest.fixture(scope="module")
def setup(bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    queue = unique("life")
    db = tmp_path_factory.mktemp("view") / "status.db"
    app = make_app(queue, bootstrap)
    saved = {k: os.environ.get(k) for k in ("KQUEUE_API_URL", "KQUEUE_API_TOKEN")}
    api = ApiProcess(bootstrap, queue, db, token=TOKEN)
    os.environ["KQUEUE_API_URL"], os.environ["KQUEUE_API_TOKEN"] = api.url, TOKEN
    running = Setup(app, api, queue, db)
    try:
        with ThreadedWorker(app, group=unique("life-g"), concurrency=4):
            yield running
    finally:
        running.api.stop()  # the one running now: a test may have restarted it
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def test_a_task_is_known_from_the_moment_its_enqueue_returns(setup: Setup) -> None:
    """A GET right after the POST answers (queued or later), never 404; so does app.status right
    after an SDK enqueue that the API never saw (the view catches up before it answers a miss)."""
    for n in range(10):
        task_id = setup.post({"type": "add", "payload": {"a": n, "b": 1}})
        assert setup.status(task_id)["status"] in ("queued", "processing", "completed")
    add = setup.app.tasks[(setup.queue, "add")]
    for n in range(10):
        task_id = add.enqueue({"a": n, "b": 2})
        assert setup.app.status(task_id).status in ("queued", "processing", "completed")
    with pytest.raises(TaskNotFound):
        setup.app.status("no-such-task")


def test_a_flood_of_misses_while_the_view_is_behind_holds_up_no_other_lookup(setup: Setup, bootstrap: str) -> None:
    """200 GETs for unknown ids while an open transaction keeps the view behind a lane's end: each
    waits (on the event loop, sharing one question to Kafka) and gets 503 after the miss wait, and a
    GET for a known task meanwhile answers at once. (With a thread per waiting miss, as before, the
    known task's GET queued behind them for seconds.)"""
    known = setup.post({"type": "add", "payload": {"a": 1, "b": 1}})
    setup.watch(known)
    holder = Producer(producer_config(bootstrap, **{"transactional.id": unique("view-holder")}))
    holder.init_transactions(30)
    holder.begin_transaction()
    holder.produce(setup.queue, value=b"held", partition=0)  # past the lane's stable end until aborted
    holder.flush(30)
    try:
        with ThreadPoolExecutor(200) as pool:
            misses = [pool.submit(setup.api.request, "GET", f"/api/v1/tasks/missing-{n}") for n in range(200)]
            time.sleep(1.0)  # every miss is waiting by now
            started = time.monotonic()
            code, body = setup.api.request("GET", f"/api/v1/tasks/{known}")
            took = time.monotonic() - started
            answers = [miss.result(timeout=60) for miss in misses]
    finally:
        holder.abort_transaction(30)
    assert code == 200 and body["status"] == "completed"
    assert took < 1.0, f"a known task's GET took {took:.1f}s behind the waiting misses"
    assert {answer[0] for answer in answers} == {503}
    assert all("catching up" in answer[1]["detail"] for answer in answers)


def test_each_status_a_task_goes_through(setup: Setup) -> None:
    app, queue = setup.app, setup.queue
    # completed, with the handler's return value (kept: keep_result=True)
    added = app.tasks[(queue, "add")].enqueue({"a": 2, "b": 3})
    done = app.wait(added, timeout=60)
    assert (done.status, done.value, done.attempts) == ("completed", {"sum": 5}, 1)
    assert done.finished_at is not None and done.enqueued_at is not None and done.finished_at >= done.enqueued_at
    # retrying (with the tier and the next attempt's time), then completed on its third attempt
    flaky = app.tasks[(queue, "flaky")].enqueue({"fail_attempts": 2})
    seen = setup.watch(flaky)
    assert "retrying" in seen and seen[-1] == "completed", seen
    final = setup.status(flaky)
    assert final["attempts"] == 3 and final["error"] is None
    # failed: in the DLQ after its 2 attempts, with the last error
    doomed = setup.post({"type": "doomed", "payload": {"n": 7}})
    assert setup.watch(doomed)[-1] == "failed"
    failed = setup.status(doomed)
    assert failed["attempts"] == 2 and "doomed task 7" in failed["error"]
    # processing: seen with its worker and start time while it runs (worker reports, once a second)
    napping = setup.post({"type": "nap", "payload": {"seconds": 4}})
    seen = setup.watch(napping, until=("processing",))
    running = setup.status(napping)
    assert running["worker"] and running["timestamps"]["started_at"] is not None
    assert setup.watch(napping)[-1] == "completed"


def test_scheduled_then_cancelled_and_cancel_answers(setup: Setup) -> None:
    before = int(time.time() * 1000)
    later = setup.post({"type": "add", "payload": {"a": 1, "b": 1}, "delay": 4})
    scheduled = setup.status(later)
    assert scheduled["status"] == "scheduled"
    assert scheduled["tier"] in ("1s", "5s")
    assert before + 3500 <= scheduled["timestamps"]["next_attempt_at"] <= int(time.time() * 1000) + 4500
    code, answer = setup.api.request("DELETE", f"/api/v1/tasks/{later}")
    assert (code, answer["status"], answer["cancel_requested"]) == (202, "cancelled", True)
    assert setup.watch(later, timeout=60)[-1] == "cancelled"  # settled when its time came, never run
    assert setup.status(later)["result"] is None
    code, answer = setup.api.request("DELETE", f"/api/v1/tasks/{later}")
    assert (code, answer["status"]) == (200, "cancelled")
    finished = setup.post({"type": "add", "payload": {"a": 1, "b": 2}})
    setup.watch(finished)
    code, answer = setup.api.request("DELETE", f"/api/v1/tasks/{finished}")
    assert code == 409 and answer["status"] == "completed" and answer["result"] == {"sum": 3}
    code, answer = setup.api.request("DELETE", "/api/v1/tasks/never-enqueued")
    assert code == 404 and "never-enqueued" in answer["detail"]


@pytest.mark.parametrize("task", ["patient", "waiter"])
def test_a_running_task_is_cancelled_cooperatively_or_interrupted(setup: Setup, task: str) -> None:
    """`patient` polls ctx.cancelled and stops; `waiter` (async, interruptible=True) is cancelled
    outright. Either way it ends `cancelled` well before its 30 s, and is not retried."""
    task_id = setup.post({"type": task, "payload": {"seconds": 30}})
    setup.watch(task_id, until=("processing",))
    started = time.monotonic()
    code, answer = setup.api.request("DELETE", f"/api/v1/tasks/{task_id}")
    assert (code, answer["status"], answer["cancel_requested"]) == (202, "processing", True)
    assert setup.watch(task_id, timeout=30)[-1] == "cancelled"
    assert time.monotonic() - started < 15
    assert setup.status(task_id)["attempts"] == 1  # cancelled, never retried


def test_a_task_that_finishes_despite_its_cancel_is_completed(setup: Setup) -> None:
    task_id = setup.post({"type": "nap", "payload": {"seconds": 3}})
    setup.watch(task_id, until=("processing",))
    code, _ = setup.api.request("DELETE", f"/api/v1/tasks/{task_id}")
    assert code == 202
    assert setup.watch(task_id)[-1] == "completed"  # nap does not look at ctx.cancelled


def test_every_task_ends_in_one_final_status_and_results_match(setup: Setup) -> None:
    tasks = setup.app.tasks
    adds = {tasks[(setup.queue, "add")].enqueue({"a": n, "b": 10 * n}, key=f"k{n % 5}"): 11 * n for n in range(30)}
    flaky = [tasks[(setup.queue, "flaky")].enqueue({"fail_attempts": 1}) for _ in range(10)]
    doomed = [tasks[(setup.queue, "doomed")].enqueue({"n": n}) for n in range(10)]
    finals = {task_id: setup.app.wait(task_id, timeout=90) for task_id in [*adds, *flaky, *doomed]}
    counts = {s: sum(1 for f in finals.values() if f.status == s) for s in FINISHED}
    assert counts == {"completed": 40, "failed": 10, "cancelled": 0}
    assert all(finals[t].value == {"sum": total} for t, total in adds.items())
    assert all(finals[t].attempts == 2 and finals[t].status == "completed" for t in flaky)
    assert all(finals[t].status == "failed" for t in doomed)


def test_bad_requests_get_clear_4xx_answers(setup: Setup) -> None:
    api = setup.api
    code, body = api.request("POST", "/api/v1/tasks", {"type": "send_email", "payload": {"to": 5}})
    assert code == 422 and body["detail"][0]["loc"] == ["body", "payload", "to"]
    code, body = api.request("POST", "/api/v1/tasks", {"type": "add", "payload": {}, "priority": "urgent"})
    assert code == 422 and body["detail"][0]["loc"] == ["body", "priority"]
    code, body = api.request("POST", "/api/v1/tasks", {"type": "no_such_type", "payload": {}})
    assert code == 404 and "no_such_type" in body["detail"]
    code, body = api.request("POST", "/api/v1/tasks", {"type": "add", "queue": "elsewhere", "payload": {}})
    assert code == 404 and "elsewhere" in body["detail"]
    code, body = api.request("POST", "/api/v1/tasks", raw=b'{"type": "add", "key": "\\ud800", "payload": {}}')
    assert code == 422 and body["detail"][0]["loc"] == ["body", "key"]
    # Over 1 MiB: refused from the declared length, before the body is read (so it is never sent here).
    status_line, answer = _raw_post(api.url, 1024 * 1024 + 1)
    assert " 413 " in status_line and "1048576-byte limit" in answer
    status_line, answer = _raw_post(api.url, None, chunks=20)  # chunked: 20 x 64 KiB, no declared length
    assert " 413 " in status_line and "1048576-byte limit" in answer
    code, body = api.request("POST", "/api/v1/tasks", raw=b"{not json")
    assert code == 422
    code, body = api.request("GET", "/api/v1/queues/no-such-queue")
    assert code == 404 and "no-such-queue" in body["detail"]
    for method, path in [("GET", "/api/v1/queues"), ("GET", "/api/v1/tasks/x"), ("POST", "/api/v1/tasks"),
                         ("GET", f"/api/v1/queues/{setup.queue}/dlq"), ("GET", "/api/v1/workers")]:
        for token in ("", "wrong-token"):
            code, _ = api.request(method, path, {"type": "add", "payload": {}}, token=token or "-")
            assert code == 401, (method, path, token)


def _raw_post(url: str, declared: int | None, chunks: int = 0) -> tuple[str, str]:
    """A POST that declares `declared` body bytes and sends none, or (declared None) sends `chunks`
    chunks of 64 KiB with chunked transfer encoding; the answer's status line and body."""
    host, port = url.removeprefix("http://").split(":")
    length = f"Content-Length: {declared}" if declared is not None else "Transfer-Encoding: chunked"
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(f"POST /api/v1/tasks HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                     f"Authorization: Bearer {TOKEN}\r\n{length}\r\n\r\n".encode())
        chunk = b"10000\r\n" + b"x" * 0x10000 + b"\r\n"
        try:
            for _ in range(chunks):
                conn.sendall(chunk)
        except OSError:
            pass  # refused part way: the answer is already there to read
        data = b""
        while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
            chunk = conn.recv(4096)
            if not chunk:
                break
            data += chunk
    head, _, body = data.decode().partition("\r\n\r\n")
    return head.splitlines()[0], body


def test_queues_and_dead_letters_with_replay(setup: Setup) -> None:
    doomed = setup.post({"type": "doomed", "payload": {"n": 99}})
    assert setup.watch(doomed)[-1] == "failed"
    first_failure = setup.status(doomed)["timestamps"]["finished_at"]
    code, queues = setup.api.request("GET", "/api/v1/queues")
    assert code == 200
    mine = next(q for q in queues if q["queue"] == setup.queue)
    assert mine["dlq_records"] >= 1 and {lane["lane"] for lane in mine["lanes"]} >= {"high", "normal", "low"}
    code, detail = setup.api.request("GET", f"/api/v1/queues/{setup.queue}")
    # 3 lanes and 2 delay tiers of 3 partitions each; the worker's report names its partitions.
    assert code == 200 and len(detail["partitions"]) == 15
    assert detail["workers"] and f"{setup.queue}/0" in detail["workers"][0]["partitions"]
    code, letters = setup.api.request("GET", f"/api/v1/queues/{setup.queue}/dlq")
    assert code == 200 and any(letter["task_id"] == doomed and letter["pending"] for letter in letters)
    code, letter = setup.api.request("GET", f"/api/v1/queues/{setup.queue}/dlq/{doomed}")
    assert code == 200 and letter["payload"] == {"n": 99} and "doomed task 99" in letter["error"]
    code, report = setup.api.request("POST", f"/api/v1/queues/{setup.queue}/dlq/replay", {"task_ids": [doomed]})
    assert code == 200 and report["replayed"] == [doomed]
    # Replayed: a fresh first attempt, which fails again (the handler always does): a newer failure.
    wait_for(lambda: (setup.status(doomed)["timestamps"]["finished_at"] or 0) > first_failure, 60,
             "the replayed task to fail again")
    again = setup.status(doomed)
    assert again["status"] == "failed" and again["attempts"] == 2


def test_the_cli_shows_a_status(setup: Setup) -> None:
    task_id = setup.post({"type": "add", "payload": {"a": 20, "b": 22}})
    env = {**os.environ, "KQUEUE_API_URL": setup.api.url, "KQUEUE_API_TOKEN": TOKEN}
    shown = subprocess.run([sys.executable, "-m", "kqueue", "status", task_id, "--wait", "60"],
                           capture_output=True, text=True, env=env, cwd=ROOT, timeout=90, check=False)
    assert shown.returncode == 0, shown.stderr
    assert "completed" in shown.stdout and '{"sum":42}' in shown.stdout
    missing = subprocess.run([sys.executable, "-m", "kqueue", "status", "no-such-id"], capture_output=True,
                             text=True, env=env, cwd=ROOT, timeout=60, check=False)
    assert missing.returncode == 1 and "no task 'no-such-id'" in missing.stderr
    assert "Traceback" not in missing.stderr and len(missing.stderr.strip().splitlines()) == 1


def test_the_view_survives_a_restart_and_catches_up(setup: Setup, bootstrap: str) -> None:
    before = setup.post({"type": "add", "payload": {"a": 1, "b": 1}})
    setup.watch(before)
    setup.api.stop()
    try:
        # While the API is down, tasks are enqueued and finish.
        while_down = [setup.app.tasks[(setup.queue, "add")].enqueue({"a": n, "b": 0}) for n in range(5)]
        doomed = setup.app.tasks[(setup.queue, "doomed")].enqueue({"n": 5})
        setup.app.flush()
        time.sleep(4)
    finally:
        setup.api = ApiProcess(bootstrap, setup.queue, setup.db, token=TOKEN)
        os.environ["KQUEUE_API_URL"] = setup.api.url
    assert setup.status(before)["status"] == "completed"
    finals = {task_id: setup.app.wait(task_id, timeout=60) for task_id in [*while_down, doomed]}
    assert [finals[t].value for t in while_down] == [{"sum": n} for n in range(5)]
    assert finals[doomed].status == "failed"


@pytest.mark.parametrize("kaput", [b"", b"\x00\x01not avro"])
def test_a_bad_record_in_a_lane_does_not_stop_the_view(setup: Setup, kafka: Kafka, kaput: bytes) -> None:
    """A record kqueue did not write (no headers, garbage value) is still a task to the view: the
    worker dead-letters it, and the view keeps answering for the tasks after it."""
    producer = Producer({"bootstrap.servers": kafka.bootstrap})
    producer.produce(setup.queue, kaput, b"x")
    assert producer.flush(30) == 0
    after = setup.post({"type": "add", "payload": {"a": 3, "b": 4}})
    assert setup.watch(after)[-1] == "completed"


def test_schemathesis_finds_no_server_error(setup: Setup, tmp_path: Path) -> None:
    """Property-based requests generated from /openapi.json (schemathesis) against the live API:
    whatever they send, the answer is never a 5xx."""
    run = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "run", f"{setup.api.url}/openapi.json",
         "--checks", "not_a_server_error", "--max-examples", "10", "--header", f"Authorization: Bearer {TOKEN}",
         "--request-timeout", "30", "--report", "junit", "--report-dir", str(tmp_path)],
        capture_output=True, text=True, cwd=ROOT, timeout=600, check=False,
        env={**os.environ, "SCHEMATHESIS_HOOKS": "", "NO_COLOR": "1"})
    summary = run.stdout[-3000:]
    assert run.returncode == 0, summary + run.stderr[-2000:]
    counts = re.search(r"(\d+) generated, (\d+) passed", run.stdout)
    assert counts is not None, summary
    generated, passed = int(counts.group(1)), int(counts.group(2))
    assert generated == passed and generated >= 100, summary  # every operation was exercised
