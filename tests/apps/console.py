"""The dashboard tests' app: the lifecycle app's queue (KQ_TEST_QUEUE) and a second queue,
`<queue>-letters`, that no worker consumes: raw dead letters, lane and tier records are written
into it straight, so its figures and dead letters stay exactly what the test put there.
"""

from __future__ import annotations

import os
from typing import Any

from kqueue import App
from tests.apps.lifecycle import make_app


def letters_queue(queue: str) -> str:
    return f"{queue}-letters"


def make_console_app(queue: str, bootstrap: str | None = None) -> App:
    app = make_app(queue, bootstrap)

    @app.task(queue=letters_queue(queue))
    def resize(payload: dict[str, Any]) -> None: ...

    return app


app = make_console_app(os.environ.get("KQ_TEST_QUEUE", "console"))
