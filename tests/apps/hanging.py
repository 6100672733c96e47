"""A test app whose sync task hangs past its time limit (KQ_TEST_QUEUE names the queue): each
attempt leaves a thread running that Python cannot stop."""

from __future__ import annotations

import os
import time
from typing import Any

from kqueue import App

app = App("hanging")


@app.task(queue=os.environ.get("KQ_TEST_QUEUE", "hanging"), timeout=0.3, max_attempts=1)
def hang(payload: dict[str, Any]) -> None:
    time.sleep(float(payload.get("sleep", 600)))
