"""A test app for `kqueue consume` subprocesses that records when each commit landed.

KQ_TEST_QUEUE names the queue, KQ_TEST_COMMITS the file: one line per commit, "wall-time offset" (the
committed offset of the queue's partition 0, -1 if this commit did not move it),
written by an on_commit hook. Each task sleeps payload["sleep"] seconds, so completions go on for a while.
"""

from __future__ import annotations

import os
import time
from typing import Any

from kqueue import App, CommitEvent, Middleware

QUEUE = os.environ.get("KQ_TEST_QUEUE", "committing")
COMMITS = os.environ.get("KQ_TEST_COMMITS", "/tmp/kqueue-commits.log")


class CommitLog(Middleware):
    def on_commit(self, event: CommitEvent) -> None:
        with open(COMMITS, "a") as log:
            log.write(f"{time.time():.4f} {event.offsets.get((QUEUE, 0), -1)}\n")


app = App("committing", middleware=[CommitLog()])


@app.task(queue=QUEUE)
def nap(payload: dict[str, Any]) -> None:
    time.sleep(float(payload.get("sleep", 0)))
