"""How commits are going: refusals in a row (which stop the worker) and outages (which do not).

A batch Kafka refuses for its own records fails the same way every time: after
MAX_REFUSALS_IN_A_ROW in a row the worker stops, so it is seen. Any other failed commit (a broker
away, a coordinator moving) is logged once when the failures start and once when a commit goes
through again, and `failing_for` is the readiness signal meanwhile.
"""

from __future__ import annotations

import logging
import time

from kqueue.transport.settle import BatchNotCommitted

log = logging.getLogger("kqueue.worker")
MAX_REFUSALS_IN_A_ROW = 3


class CommitHealth:
    def __init__(self) -> None:
        self._refusals_in_a_row = 0
        self._failing_since: float | None = None
        self._failed = 0

    def failed(self, exc: BatchNotCommitted) -> bool:
        """Note a commit that did not go through; True when the worker must stop."""
        if exc.permanent:
            self._refusals_in_a_row += 1
            if self._refusals_in_a_row >= MAX_REFUSALS_IN_A_ROW:
                return True
        if self._failing_since is None:
            self._failing_since = time.monotonic()
            log.warning("%s; Kafka may be unreachable. Fetched tasks keep running; their outcomes are kept "
                        "and committed once Kafka answers (nothing is lost meanwhile)", exc)
        else:
            log.debug("%s; the batch is kept and committed again", exc)
        self._failed += 1
        return False

    def landed(self) -> None:
        self._refusals_in_a_row = 0
        if self._failing_since is not None:
            log.warning("committing again after %.0fs and %d failed attempt(s)",
                        time.monotonic() - self._failing_since, self._failed)
            self._failing_since, self._failed = None, 0

    def failing_for(self) -> float:
        """Seconds since commits started failing (0: they go through)."""
        return 0.0 if self._failing_since is None else time.monotonic() - self._failing_since
