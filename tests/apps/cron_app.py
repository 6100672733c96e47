"""A test app with one cron schedule: each run appends "task_id pid" to a log file.

KQ_CRON_APP names the App (a fresh name per test keeps schedules, progress and the scheduler group
apart), KQ_TEST_QUEUE the queue, KQ_TEST_LOG the file, KQ_CRON_EXPR the schedule (default every
second), KQ_CRON_TZ its zone, KQ_CRON_CATCH_UP "true"/"false" (any other value is passed as it is, to
be refused; unset: the default).
"""

from __future__ import annotations

import os
from typing import Any

from kqueue import App, TaskContext

app = App(os.environ.get("KQ_CRON_APP", "cron-test"))
LOG = os.environ.get("KQ_TEST_LOG", "/tmp/kqueue-cron.log")
_catch_up = os.environ.get("KQ_CRON_CATCH_UP")
_options: dict[str, Any] = {} if _catch_up is None else {"catch_up": {"true": True, "false": False}.get(_catch_up,
                                                                                                     _catch_up)}


@app.cron(os.environ.get("KQ_CRON_EXPR", "* * * * * *"), tz=os.environ.get("KQ_CRON_TZ", "UTC"),
          payload={"from": "cron"}, name="tick", **_options)
@app.task(queue=os.environ.get("KQ_TEST_QUEUE", "cron"))
def tick(payload: dict[str, Any], ctx: TaskContext) -> None:
    with open(LOG, "a") as log:
        log.write(f"{ctx.task_id} {os.getpid()}\n")
