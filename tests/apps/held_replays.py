"""The lifecycle app (tests/apps/lifecycle.py) for `kqueue api`, with every dead-letter replay held,
after it has taken the queue's replay id and chosen its letters, until KQ_TEST_REPLAY_PARTIES replays
have come that far: so concurrent replays all read before any writes, the race the fence settles.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from kqueue.control import dlq
from kqueue.control.dlq import DeadLetter, ReplayReport
from tests.apps.lifecycle import make_app

app = make_app(os.environ.get("KQ_TEST_QUEUE", "lifecycle"))

_together = threading.Barrier(int(os.environ.get("KQ_TEST_REPLAY_PARTIES", "1")), timeout=60)
_replay = dlq.replay


def _all_selected(_letters: list[DeadLetter]) -> None:
    _together.wait()


def _held_replay(*args: Any, **kwargs: Any) -> ReplayReport:
    return _replay(*args, on_selected=_all_selected, **kwargs)


dlq.replay = _held_replay  # the API calls dlq.replay through the module, so it meets this one
