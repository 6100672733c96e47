"""The queue-wide rate limit through the REST API, the SDK and `kqueue stats`, with a real broker: set,
shown by the queue list and detail (also when the SDK set it: the status view reads it back, and a
pause of the same queue stays a pause), cleared; a bad rate is a 422 with one message, an unknown
queue a 404."""

from __future__ import annotations

import json
from pathlib import Path

import kqueue
from tests.integration.test_queue_limit import cli
from tests.support.api import ApiProcess
from tests.support.kafka import Kafka, unique
from tests.support.worker import wait_for

APP = "tests.apps.paced:app"


def test_limit_through_the_api_and_the_sdk_is_shown_and_cleared(kafka: Kafka, tmp_path: Path) -> None:
    queue = unique("qlimit-api")
    app = kqueue.App("qlimit-api", kafka.bootstrap, partitions=2)
    app.task(queue=queue, name="step")(lambda payload: None)
    app.ensure_queue(queue)
    paused = app.pause(queue, "incident")  # the limit must not be taken for a resume of the pause
    api = ApiProcess(kafka.bootstrap, queue, tmp_path / "view.db", app=APP)
    try:
        status, body = api.request("POST", f"/api/v1/queues/{queue}/limit", {"rate": "500/s"})
        assert status == 200, body
        assert body["queue"] == queue and body["rate"] == "500/s" and body["per_second"] == 500.0
        shown = {"rate": "500/s", "per_second": 500.0, "since": body["since"]}
        _, listed = api.request("GET", "/api/v1/queues")
        assert [q["limit"] for q in listed if q["queue"] == queue] == [shown]
        assert api.request("GET", f"/api/v1/queues/{queue}")[1]["limit"] == shown

        # The SDK, as a service would call it: the API's view reads the record back from Kafka.
        assert app.limit(queue, "30/m").as_json()["rate"] == "30/m"
        wait_for(lambda: (api.request("GET", f"/api/v1/queues/{queue}")[1]["limit"] or {}).get("rate") == "30/m",
                 30, "the view to read the SDK's limit")
        detail = api.request("GET", f"/api/v1/queues/{queue}")[1]
        assert detail["paused"] == {"since": paused.paused.since if paused.paused else None, "reason": "incident"}
        stats = cli(kafka.bootstrap, "stats", queue, "--group", "g", "--json")
        assert stats.returncode == 0, stats.stderr
        assert json.loads(stats.stdout)["limit"]["rate"] == "30/m"

        status, body = api.request("POST", f"/api/v1/queues/{queue}/limit", {"rate": "fast"})
        assert status == 422 and len(body["detail"]) == 1, body
        assert "'fast' is not a rate" in body["detail"][0]["msg"], body
        status, body = api.request("POST", f"/api/v1/queues/{unique('nope')}/limit", {"rate": "5/s"})
        assert status == 404, body

        status, body = api.request("POST", f"/api/v1/queues/{queue}/limit", {"rate": None})
        assert (status, body) == (200, {"queue": queue, "rate": None, "per_second": None, "since": None})
        assert api.request("GET", f"/api/v1/queues/{queue}")[1]["limit"] is None
        cleared = cli(kafka.bootstrap, "stats", queue, "--group", "g")
        assert cleared.returncode == 0 and "none (queue-wide)" in cleared.stdout, cleared.stdout + cleared.stderr
    finally:
        api.stop()
