"""How commits are going: refusals in a row (which stop the worker) and outages (which do not).

A batch Kafka refuses for its own records fails the same way every time: after
MAX_REFUSALS_IN_A_ROW in a row the worker stops, so it is seen. Any other failed commit (a broker
away, a coordinator moving) is logged when a series of failures starts; one lasting OUTAGE_AFTER
gets one more line, and one when a commit goes through again. `failing_for` is the readiness
signal meanwhile.
"""

from __future__ import annotations

import logging
import time

from kqueue.transport.settle import BatchNotCommitted

log = logging.getLogger("kqueue.worker")
MAX_REFUSALS_IN_A_ROW = 3
OUTAGE_AFTER = 5.0  # seconds of failing commits before the worker says Kafka may be unreachable


class CommitHealth:
    def __init__(self) -> None:
        self._refusals_in_a_row = 0
        self._failing_since: float | None = None
        self._failed = 0
        self._outage = False  # failing long enough to say so

    def failed(self, exc: BatchNotCommitted) -> bool:
        """Note a commit that did not go through; True when the worker must stop."""
        if exc.permanent:
            self._refusals_in_a_row += 1
            if self._refusals_in_a_row >= MAX_REFUSALS_IN_A_ROW:
                return True
        now = time.monotonic()
        if self._failing_since is None:
            self._failing_since = now
            log.warning("%s; the batch is kept and committed again", exc)  # often one abort, then fine
        elif not self._outage and now - self._failing_since >= OUTAGE_AFTER:
            self._outage = True
            log.warning("commits have failed for %.0fs (%s): Kafka may be unreachable. Fetched tasks keep "
                        "running; their outcomes are kept and committed once Kafka answers (nothing is lost "
                        "meanwhile)", now - self._failing_since, exc)
        else:
            log.debug("%s; the batch is kept and committed again", exc)
        self._failed += 1
        return False

    def landed(self) -> None:
        self._refusals_in_a_row = 0
        if self._outage and self._failing_since is not None:
            log.warning("committing again after %.0fs and %d failed attempt(s)",
                        time.monotonic() - self._failing_since, self._failed)
        self._failing_since, self._failed, self._outage = None, 0, False

    def failing_for(self) -> float:
        """Seconds since commits started failing (0: they go through)."""
        return 0.0 if self._failing_since is None else time.monotonic() - self._failing_since
