"""`kqueue api` (a subprocess, a real broker) at its limits: replays racing each other, a replay
request that is not quite a boolean, and task records too large for Kafka (issue 19, items 4-6)."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import NewTopic

from kqueue.control.dlq import pending_dead_letters
from kqueue.core import names
from kqueue.core.oversize import MAX_RECORD_BYTES, record_bytes
from kqueue.core.records import OutRecord, RecordKind
from tests.integration.test_dlq_replay_race import make_dead_letters, replayed_on_main
from tests.support.api import ApiProcess
from tests.support.kafka import Kafka, unique

TOKEN = "limits-token"
JSON_AROUND_BLOB = len(b'{"blob":""}')  # what encode_json adds around the blob's characters


def call(api: ApiProcess, method: str, path: str, body: Any = None,
         raw: bytes | None = None) -> tuple[int, dict[str, str], Any]:
    """(status, headers by lower-case name, body: JSON, else text) of one request with the token."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(api.url + path, data=data, method=method,
                                     headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as answer:
            return answer.status, _lower(answer.headers.items()), _body(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, _lower(exc.headers.items()), _body(exc.read())


def _lower(headers: list[tuple[str, str]]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers}


def _body(data: bytes) -> Any:
    try:
        return json.loads(data or b"null")
    except ValueError:
        return data.decode(errors="replace")  # e.g. a bare 500's "Internal Server Error"


# -- item 4: replays racing -------------------------------------------------------------------------
def test_six_replays_at_once_one_replays_each_letter_the_others_get_409(
        kafka: Kafka, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """All six take the queue's replay id and choose their letters before any writes (the app holds
    each replay until six have come that far): the last to take the id replays, the five it fenced
    answer 409 with Retry-After and one line (500, an unhandled ReplayConflict, before)."""
    queue, ids = make_dead_letters(kafka, 3)
    monkeypatch.setenv("KQ_TEST_REPLAY_PARTIES", "6")
    with ApiProcess(kafka.bootstrap, queue, tmp_path / "view.db", app="tests.apps.held_replays:app",
                    token=TOKEN) as api:
        path = f"/api/v1/queues/{queue}/dlq/replay"
        with ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(lambda _: call(api, "POST", path, {"all": True}), range(6)))
        schema_code, _, schema = call(api, "GET", "/openapi.json")
    assert sorted(code for code, _, _ in answers) == [200, 409, 409, 409, 409, 409], answers
    [report] = [body for code, _, body in answers if code == 200]
    assert sorted(report["replayed"]) == sorted(ids)
    for code, headers, body in answers:
        if code == 409:
            assert int(headers["retry-after"]) >= 1
            assert f"another replay of queue '{queue}'" in body["detail"] and "\n" not in body["detail"]
    assert replayed_on_main(kafka, queue, len(ids), len(ids)) == Counter(ids)  # each exactly once
    documented = schema["paths"]["/api/v1/queues/{queue}/dlq/replay"]["post"]["responses"]
    assert schema_code == 200 and "409" in documented


# -- item 5: a strict boolean -----------------------------------------------------------------------
def test_replay_all_must_be_a_real_boolean(kafka: Kafka, tmp_path: Path) -> None:
    """{"all": "yes"} replayed the whole DLQ (any truthy string was true); now 422, nothing replayed."""
    queue, ids = make_dead_letters(kafka, 2)
    with ApiProcess(kafka.bootstrap, queue, tmp_path / "view.db", token=TOKEN) as api:
        path = f"/api/v1/queues/{queue}/dlq/replay"
        for value in ("yes", "true", "false", 1, 0, None):
            code, _, body = call(api, "POST", path, {"all": value})
            assert code == 422 and body["detail"][0]["loc"] == ["body", "all"], (value, code, body)
        assert sorted(letter.task_id for letter in pending_dead_letters(kafka.bootstrap, queue)) == sorted(ids)
        code, _, report = call(api, "POST", path, {"all": True})
    assert code == 200 and sorted(report["replayed"]) == sorted(ids)


# -- item 6: records too large for Kafka ------------------------------------------------------------
@pytest.fixture(scope="module")
def api(bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ApiProcess, str]]:
    queue = unique("limits")
    with ApiProcess(bootstrap, queue, tmp_path_factory.mktemp("limits") / "view.db", token=TOKEN) as running:
        yield running, queue


def _blob_body(characters: int, blob: str = "x") -> bytes:
    return json.dumps({"type": "add", "payload": {"blob": blob * characters}}).encode()


def _record_overhead(kafka: Kafka, api: ApiProcess, queue: str) -> int:
    """Bytes a task record from the API counts beyond its payload (headers, framing): measured on one."""
    code, _, answer = call(api, "POST", "/api/v1/tasks", raw=_blob_body(1))
    assert code == 202, answer
    [msg] = [m for m in kafka.read_all(queue, expected=1)
             if dict(m.headers() or [])[names.H_ID].decode() == answer["task_id"]]
    headers = [(name, value or b"") for name, value in msg.headers() or []]
    return record_bytes(OutRecord(RecordKind.DELIVER, queue, b"", msg.key(), headers, None))


def test_a_body_under_the_body_limit_whose_record_is_too_large_is_413(api: tuple[ApiProcess, str]) -> None:
    """The issue's 1,040,029-byte body: under the 1 MiB body limit, over the record limit. It got 503
    with Retry-After (a retry cannot help); now 413 naming the limit."""
    running, _ = api
    body = _blob_body(1_040_029 - len(_blob_body(0)))
    assert len(body) == 1_040_029
    code, headers, answer = call(running, "POST", "/api/v1/tasks", raw=body)
    assert code == 413, (code, answer)
    assert f"{MAX_RECORD_BYTES}-byte limit" in answer["detail"] and "\n" not in answer["detail"]
    assert "retry-after" not in headers


def test_the_record_limit_holds_to_the_byte(kafka: Kafka, api: tuple[ApiProcess, str]) -> None:
    """A payload whose record is exactly at the limit is enqueued; one byte more is 413."""
    running, queue = api
    fits = MAX_RECORD_BYTES - _record_overhead(kafka, running, queue) - JSON_AROUND_BLOB
    code, _, answer = call(running, "POST", "/api/v1/tasks", raw=_blob_body(fits))
    assert code == 202, answer
    code, _, answer = call(running, "POST", "/api/v1/tasks", raw=_blob_body(fits + 1))
    assert code == 413 and f"{MAX_RECORD_BYTES}-byte limit" in answer["detail"], (code, answer)
    code, _, answer = call(running, "POST", "/api/v1/tasks", raw=_blob_body(10))
    assert code == 202, answer  # the API's producer is still fine


def test_a_topic_with_a_smaller_max_message_bytes_gets_413(kafka: Kafka, tmp_path: Path) -> None:
    """The queue's topic takes at most 100 kB (its max.message.bytes): Kafka refuses a 150 kB task,
    which is 413 naming that setting (503 before); a 50 kB one is enqueued."""
    queue = unique("smalltopic")
    admin = kafka.admin()
    created = admin.create_topics([NewTopic(queue, 3, 1, config={"max.message.bytes": "100000"})])
    for future in created.values():
        future.result(timeout=30)
    with ApiProcess(kafka.bootstrap, queue, tmp_path / "view.db", token=TOKEN) as running:
        incompressible = os.urandom(75_000).hex()  # lz4 must not shrink it under the topic's limit
        code, headers, answer = call(running, "POST", "/api/v1/tasks", raw=_blob_body(1, incompressible))
        assert code == 413, (code, answer)
        assert queue in answer["detail"] and "max.message.bytes" in answer["detail"]
        assert "\n" not in answer["detail"] and "retry-after" not in headers
        code, _, answer = call(running, "POST", "/api/v1/tasks", raw=_blob_body(1, incompressible[:50_000]))
        assert code == 202, answer
