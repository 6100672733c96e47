"""A test app for payloads and results that break JSON's practical rules (deep nesting, NaN).

`make_app(queue)` builds it for a test; `app` (queue from KQ_TEST_QUEUE) is what `kqueue api` loads.
"""

from __future__ import annotations

import os
from typing import Any

from kqueue import App

# Avro carries what JSON cannot: bytes that are not text, and NaN (a valid Avro double).
READING = {"type": "record", "name": "Reading", "namespace": "tests.deep",
           "fields": [{"name": "raw", "type": "bytes"}, {"name": "value", "type": "double"}]}


def nested(depth: int) -> Any:
    """`depth` levels of lists around a 0 (`nested(1)` is `[0]`)."""
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


def make_app(queue: str, bootstrap: str | None = None) -> App:
    app = App("deep-json", bootstrap, partitions=1, delay_tiers=("1s",))

    @app.task(queue=queue, keep_result=True)
    def echo(payload: Any) -> Any:
        return payload

    @app.task(queue=queue, keep_result=True)
    def nest(payload: dict[str, int]) -> Any:
        return nested(payload["depth"])

    @app.task(queue=queue, keep_result=True)
    def ratio(payload: dict[str, Any]) -> dict[str, float]:
        return {"ratio": float("nan")}

    @app.task(queue=queue, max_attempts=1)
    def refuse(payload: Any) -> None:
        raise ValueError("refused on purpose")

    @app.task(queue=queue, max_attempts=1, schema=READING)
    def measure(payload: dict[str, Any]) -> None:
        raise ValueError("refused on purpose")

    return app


app = make_app(os.environ.get("KQ_TEST_QUEUE", "deep-json"))
