"""JSON that nests too deep or holds NaN/Infinity, through a real broker, `kqueue api` (a subprocess) and a
worker: refused at enqueue (SDK ValueError, CLI one line, API 422 naming the limit, at any depth), not kept
as a result, and, when older versions or foreign producers wrote such values anyway, shown as
`{"unrenderable": why}` by every read: no 500, and no page blanked by one bad task."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import Producer

from kqueue import App
from kqueue.core import names
from kqueue.core.json_rules import MAX_JSON_DEPTH
from kqueue.core.records import status_record
from kqueue.core.status import TaskEvent
from kqueue.transport.config import producer_config
from tests.apps.deep_json import make_app, nested
from tests.support.api import ROOT, ApiProcess
from tests.support.kafka import unique
from tests.support.worker import ThreadedWorker, wait_for

TOKEN = "deep-token"
LIMIT = f"nested deeper than {MAX_JSON_DEPTH} levels"
TOO_DEEP = {"unrenderable": f"{LIMIT} (kqueue's JSON depth limit)"}
NOT_FINITE = {"unrenderable": "holds NaN or Infinity, which standard JSON has no form for"}


class Setup:
    def __init__(self, app: App, api: ApiProcess, queue: str, bootstrap: str) -> None:
        self.app, self.api, self.queue, self.bootstrap = app, api, queue, bootstrap

    def get(self, path: str) -> Any:
        code, body = self.api.request("GET", path)
        assert code == 200, (path, code, str(body)[:300])
        return body

    def finished(self, task_id: str, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            body = self.get(f"/api/v1/tasks/{task_id}")
            if body["status"] in ("completed", "failed", "cancelled"):
                return dict(body)
            time.sleep(0.1)
        raise AssertionError(f"{task_id} did not finish")

    def post_raw(self, text: str) -> tuple[int, Any]:
        return self.api.request("POST", "/api/v1/tasks", raw=text.encode())

    def produce(self, topic: str, value: bytes, key: bytes, headers: list[tuple[str, bytes]]) -> None:
        """Write a record as a foreign producer (or an older kqueue) would: no SDK checks."""
        producer = Producer(producer_config(self.bootstrap))
        producer.produce(topic, value=value, key=key, headers=headers)
        assert producer.flush(30) == 0


@pytest.fixture(scope="module")
def setup(bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    queue = unique("deep")
    app = make_app(queue, bootstrap)
    app.ensure_queue(queue)
    api = ApiProcess(bootstrap, queue, tmp_path_factory.mktemp("view") / "status.db",
                     app="tests.apps.deep_json:app", token=TOKEN)
    try:
        with ThreadedWorker(app, group=unique("deep-g"), concurrency=2):
            yield Setup(app, api, queue, bootstrap)
    finally:
        api.stop()


def envelope(payload_text: str, task_type: str = "echo") -> str:
    return '{"type":"' + task_type + '","payload":' + payload_text + "}"


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 950, 980, 5000])
def test_a_payload_nested_too_deep_is_refused_with_422_naming_the_limit(setup: Setup, depth: int) -> None:
    """Before: 101 levels were accepted, 950 answered 500 (RecursionError), 980 and 5000 answered 400
    "There was an error parsing the body"."""
    code, answer = setup.post_raw(envelope("[" * depth + "]" * depth))
    assert code == 422, (code, str(answer)[:300])
    assert LIMIT in json.dumps(answer["detail"])


def test_a_payload_at_the_limit_is_accepted_kept_and_shown(setup: Setup) -> None:
    payload = nested(MAX_JSON_DEPTH)  # 100 levels: the limit is inclusive
    code, answer = setup.post_raw(envelope(json.dumps(payload)))
    assert code == 202, answer
    assert setup.finished(answer["task_id"])["result"] == payload
    brackets_in_text = {"text": "[{" * 2000}  # brackets inside strings are not nesting (result under 8 KiB)
    code, answer = setup.post_raw(envelope(json.dumps(brackets_in_text)))
    assert code == 202, answer
    assert setup.finished(answer["task_id"])["result"] == brackets_in_text


@pytest.mark.parametrize("payload", ['{"x":NaN}', '{"x":Infinity}', '[1,{"y":[-Infinity]}]'])
def test_nan_and_infinity_are_refused_with_422(setup: Setup, payload: str) -> None:
    """Before: accepted (202) and produced to Kafka as non-standard JSON."""
    code, answer = setup.post_raw(envelope(payload))
    assert code == 422, (code, answer)
    assert "NaN and Infinity have no JSON form" in json.dumps(answer["detail"])


@pytest.mark.parametrize(("payload", "why"), [
    (nested(MAX_JSON_DEPTH + 1), LIMIT),
    ({"deep": nested(5000)}, LIMIT),  # past json's own recursion: before, a RecursionError
    ({"x": float("nan")}, "NaN or Infinity"),
    ([1, {"y": float("-inf")}], "NaN or Infinity"),
])
def test_the_sdk_refuses_deep_or_not_finite_payloads_with_value_error(setup: Setup, payload: Any, why: str) -> None:
    echo = setup.app.tasks[(setup.queue, "echo")]
    with pytest.raises(ValueError, match=why):
        echo.enqueue(payload)
    with pytest.raises(ValueError, match=why):
        asyncio.run(echo.enqueue_async(payload))


@pytest.mark.parametrize(("payload", "why"), [("[" * 5000 + "]" * 5000, LIMIT), ('{"x":NaN}', "NaN")])
def test_kqueue_produce_refuses_them_in_one_line(setup: Setup, payload: str, why: str) -> None:
    """Before: 5000 levels ended in a RecursionError traceback, NaN was produced."""
    env = {**os.environ, "KQUEUE_BOOTSTRAP_SERVERS": setup.bootstrap}
    done = subprocess.run([sys.executable, "-m", "kqueue", "produce", setup.queue, "--type", "echo", "--json", payload],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr[-500:]
    assert why in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_a_result_too_deep_or_not_finite_is_not_kept(setup: Setup) -> None:
    """Before: a 300-level result was kept and its GET answered 500; NaN was kept as non-standard JSON."""
    tasks = setup.app.tasks
    deep = tasks[(setup.queue, "nest")].enqueue({"depth": 300})
    nan = tasks[(setup.queue, "ratio")].enqueue({})
    fine = tasks[(setup.queue, "nest")].enqueue({"depth": 3})
    setup.app.flush()
    for task_id, why in ((deep, LIMIT), (nan, "NaN or Infinity")):
        answer = setup.finished(task_id)
        assert (answer["status"], answer["result"]) == ("completed", None)
        steps = json.dumps(setup.get(f"/api/v1/tasks/{task_id}/timeline"))
        assert "result not kept" in steps and why in steps
    assert setup.finished(fine)["result"] == [[[0]]]


def test_results_written_by_others_are_shown_as_unrenderable_and_the_list_stays_up(setup: Setup) -> None:
    """An older kqueue (or anyone writing _kqueue.status) kept results that no JSON encoder here can
    write. Before: each of their GETs answered 500, and so did the list of recent tasks."""
    stored = {"deep300": (json.dumps(nested(300)), TOO_DEEP),
              "deep5000": ("[" * 5000 + "]" * 5000, TOO_DEEP),
              "nan": ('{"ratio":NaN}', NOT_FINITE)}
    ids = {name: unique(f"foreign-{name}") for name in stored}
    good = setup.app.tasks[(setup.queue, "echo")].enqueue({"ok": True})
    setup.app.flush()
    assert setup.finished(good)["result"] == {"ok": True}
    for name, (text, _) in stored.items():
        event = TaskEvent(ids[name], setup.queue, "nest", "completed", 1, int(time.time() * 1000), result=text)
        record = status_record(event, setup.app.topic_prefix)
        assert record.value is not None and record.key is not None
        setup.produce(record.topic, record.value, record.key, [])
    for name, (_, marker) in stored.items():
        assert setup.finished(ids[name])["result"] == marker
    listed = {task["task_id"]: task for task in setup.get(f"/api/v1/tasks?queue={setup.queue}&limit=1000")}
    assert {ids[name]: listed[ids[name]]["result"] for name in stored} == {ids[n]: m for n, (_, m) in stored.items()}
    assert listed[good]["result"] == {"ok": True}  # the others in the list are intact


def test_a_foreign_dead_letter_nested_too_deep_is_shown_as_unrenderable(setup: Setup) -> None:
    """A foreign producer's records the worker dead-letters (the handler refuses them). Before: GET
    /dlq/{id} answered 500 for the 300- and 5000-level payloads, and showed NaN as null."""
    payloads = {"deep300": (json.dumps(nested(300)).encode(), TOO_DEEP),
                "deep5000": (b"[" * 5000 + b"]" * 5000, TOO_DEEP),
                "nan": (b'{"ratio":NaN}', NOT_FINITE),
                "plain": (b'{"ok":[1,2]}', {"ok": [1, 2]})}
    ids = {name: unique(f"letter-{name}") for name in payloads}
    for name, (value, _) in payloads.items():
        setup.produce(names.main_topic(setup.queue, setup.app.topic_prefix), value, name.encode(),
                      [(names.H_ID, ids[name].encode()), (names.H_TYPE, b"refuse")])

    def dead(task_id: str) -> bool:
        letters = setup.get(f"/api/v1/queues/{setup.queue}/dlq?limit=1000")
        return task_id in {letter["task_id"] for letter in letters}

    for name, (_, shown) in payloads.items():
        wait_for(functools.partial(dead, ids[name]), 60, f"the dead letter {name} in the view")
        letter = setup.get(f"/api/v1/queues/{setup.queue}/dlq/{ids[name]}")
        assert letter["payload"] == shown, name


def test_an_avro_dead_letter_with_binary_bytes_or_nan_is_shown(setup: Setup) -> None:
    """Avro holds bytes that are not UTF-8 and NaN doubles. Before: GET /dlq/{id} answered 500 for
    the bytes, and showed NaN as null."""
    measure = setup.app.tasks[(setup.queue, "measure")]
    binary = measure.enqueue({"raw": b"\xff\x00\x80", "value": 1.5})
    nan = measure.enqueue({"raw": b"ok", "value": float("nan")})
    setup.app.flush()
    assert setup.finished(binary)["status"] == "failed" and setup.finished(nan)["status"] == "failed"
    letter = setup.get(f"/api/v1/queues/{setup.queue}/dlq/{binary}")
    assert letter["payload"] == {"raw": "\xff\x00\x80", "value": 1.5}  # one character per byte, as Avro's JSON
    assert setup.get(f"/api/v1/queues/{setup.queue}/dlq/{nan}")["payload"] == NOT_FINITE
