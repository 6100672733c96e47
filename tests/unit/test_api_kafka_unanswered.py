"""A figure Kafka cannot give right now (a brand-new topic without a leader yet, a broker away)
is a 503 with Retry-After and one line, not a 500: seen once from GET /api/v1/queues just after
start-up. The route is driven here with the client's own error, raised where the read happens."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from fastapi.testclient import TestClient

import kqueue
from kqueue.api.queues import QueueService
from kqueue.api.server import create_api
from kqueue.api.service import TaskService
from kqueue.view.store import StatusStore


class NoLeaderYet(QueueService):
    def summary(self, queue: str) -> dict[str, Any]:
        raise KafkaException(KafkaError(KafkaError.LEADER_NOT_AVAILABLE, "Broker: Leader not available"))


def test_a_kafka_error_reading_queue_figures_is_a_503(tmp_path: Path) -> None:
    app = kqueue.App("unanswered", "127.0.0.1:1")
    app.task(queue="q", name="t")(lambda payload: None)
    store = StatusStore(tmp_path / "view.db")
    try:
        client = TestClient(create_api(TaskService(app, store), NoLeaderYet(app, store)))
        answer = client.get("/api/v1/queues")
        assert answer.status_code == 503, answer.text
        assert answer.headers["retry-after"] == "1"
        assert answer.json() == {"detail": "Kafka could not answer now: Broker: Leader not available"}
    finally:
        store.close()
