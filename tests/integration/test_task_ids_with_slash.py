"""Task ids holding `/`, `%`, `?`, `#` or spaces (a foreign producer's raw record sets any kq-id) reach
every per-task route of `kqueue api` (issue 19, item 9): status, timeline, cancel, the dead letter,
replay; through the SDK's status client and the dashboard, which quote them. The DLQ listed such
ids, and every per-task route answered 404 for them."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from confluent_kafka import Producer
from selenium.webdriver.common.by import By

from kqueue.core import names
from kqueue.sdk.status_client import fetch_status
from kqueue.transport.config import producer_config
from tests.apps.lifecycle import make_app
from tests.integration.test_dashboard import _browser, _texts, _wait
from tests.support.api import ApiProcess
from tests.support.kafka import unique
from tests.support.worker import ThreadedWorker, wait_for

TOKEN = "odd-ids-token"
# Ids unique to this run (the status topic outlives a run on a shared cluster), each holding the odd part.
RUN = uuid.uuid4().hex[:6]
DOOMED = [f"{odd}-{RUN}" for odd in ("a/b", "100%", "why?", "#1", "with space", "a/b/c/%2F?x=1#y z/")]
CANCELLED = f"to/cancel me?-{RUN}"


def _path(task_id: str) -> str:
    return quote(task_id, safe="")


@pytest.fixture(scope="module")
def odd(bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Raw records with odd ids on a queue: doomed ones (one attempt) and a nap, cancelled through the
    API while queued; then a worker settles them all."""
    queue = unique("oddids")
    app = make_app(queue, bootstrap)
    app.ensure_queue(queue)
    saved = os.environ.get("KQUEUE_API_TOKEN")
    os.environ["KQUEUE_API_TOKEN"] = TOKEN  # what the SDK's status client sends
    try:
        with ApiProcess(bootstrap, queue, tmp_path_factory.mktemp("oddids") / "view.db", token=TOKEN) as api:
            foreign = Producer(producer_config(bootstrap))
            for n, task_id in enumerate(DOOMED):
                foreign.produce(queue, json.dumps({"n": n}).encode(), headers=[
                    (names.H_ID, task_id.encode()), (names.H_TYPE, b"doomed"), (names.H_MAX_ATTEMPTS, b"1")])
            foreign.produce(queue, b'{"seconds": 0}', headers=[(names.H_ID, CANCELLED.encode()),
                                                               (names.H_TYPE, b"nap")])
            assert foreign.flush(30) == 0
            queued = {task_id: fetch_status(api.url, task_id).status for task_id in [*DOOMED, CANCELLED]}
            cancel = api.request("DELETE", f"/api/v1/tasks/{_path(CANCELLED)}")
            with ThreadedWorker(app, group=unique("oddids-g")):
                wait_for(lambda: all(fetch_status(api.url, t).status == "failed" for t in DOOMED)
                         and fetch_status(api.url, CANCELLED).status == "cancelled", 60, "every task to settle")
            yield {"api": api, "queue": queue, "queued": queued, "cancel": cancel,
                   "tmp": tmp_path_factory.mktemp("oddids-browser")}
    finally:
        if saved is None:
            os.environ.pop("KQUEUE_API_TOKEN", None)
        else:
            os.environ["KQUEUE_API_TOKEN"] = saved


def test_a_queued_task_with_such_an_id_is_found_and_cancelled(odd: dict[str, Any]) -> None:
    assert set(odd["queued"].values()) == {"queued"}, odd["queued"]
    code, body = odd["cancel"]
    assert code == 202 and body["task_id"] == CANCELLED and body["status"] == "cancelled", odd["cancel"]
    code, body = odd["api"].request("DELETE", f"/api/v1/tasks/{_path(CANCELLED)}")
    assert code == 200 and body["task_id"] == CANCELLED  # already cancelled: the route still finds it


def test_status_timeline_cancel_and_dead_letter_reach_each_id(odd: dict[str, Any]) -> None:
    api, queue = odd["api"], odd["queue"]
    # The dead letters are read from the DLQ topic, apart from the status events: wait for them too.
    wait_for(lambda: {t["task_id"] for t in api.request("GET", f"/api/v1/queues/{queue}/dlq")[1]} == set(DOOMED),
             60, "the dead letters in the view")
    code, letters = api.request("GET", f"/api/v1/queues/{queue}/dlq")
    assert code == 200 and {letter["task_id"] for letter in letters} == set(DOOMED)
    for n, task_id in enumerate(DOOMED):
        code, status = api.request("GET", f"/api/v1/tasks/{_path(task_id)}")
        assert code == 200 and status["task_id"] == task_id and status["status"] == "failed", (task_id, status)
        code, timeline = api.request("GET", f"/api/v1/tasks/{_path(task_id)}/timeline")
        assert code == 200 and any(step["what"].startswith("failed (attempt 1)") for step in timeline), timeline
        code, letter = api.request("GET", f"/api/v1/queues/{queue}/dlq/{_path(task_id)}")
        assert code == 200 and letter["task_id"] == task_id and letter["payload"] == {"n": n}, (task_id, letter)
        code, answer = api.request("DELETE", f"/api/v1/tasks/{_path(task_id)}")
        assert code == 409 and answer["task_id"] == task_id  # finished: found, and not cancelled
    code, report = api.request("POST", f"/api/v1/queues/{queue}/dlq/replay", {"task_ids": [DOOMED[0]]})
    assert code == 200 and report["replayed"] == [DOOMED[0]]


def test_an_unknown_id_with_a_slash_is_404_naming_it(odd: dict[str, Any]) -> None:
    code, body = odd["api"].request("GET", f"/api/v1/tasks/{_path('no/such')}")
    assert code == 404 and "no/such" in body["detail"]
    code, body = odd["api"].request("GET", f"/api/v1/tasks/{_path('no/such')}/timeline")
    assert code == 404 and "no/such" in body["detail"]


def test_the_dashboard_looks_up_such_a_task(odd: dict[str, Any], browser_binaries: tuple[str, str]) -> None:
    browser = _browser(Path(odd["tmp"]), browser_binaries)
    try:
        browser.get(f"{odd['api'].url}/#token={TOKEN}")
        task_id = DOOMED[-1]
        box = browser.find_element(By.ID, "task-id")
        box.clear()
        box.send_keys(task_id)
        browser.find_element(By.CSS_SELECTOR, "#lookup button").click()
        _wait(browser, "the task's status", lambda b: "failed" in "".join(_texts(b, "#task-fields")))
        assert task_id in "".join(_texts(browser, "#task-fields"))
        steps = _texts(browser, "#timeline li")
        assert any("failed (attempt 1)" in step for step in steps), steps  # the timeline's own request
    finally:
        browser.quit()
