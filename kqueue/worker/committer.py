"""Commits in the background: a transaction's round trips (tens of ms on a busy broker) never hold
up the poll loop, so a task enqueued during a commit still starts within milliseconds.

At most one commit is in flight. The loop prepares a batch (its own state, its own thread), a commit
thread writes it, and the loop accounts for the outcome on a later turn. Whoever needs the committed
state now (a revoke, the drain) waits for the flight to land first.
"""

from __future__ import annotations

import contextlib
import threading
import time
from concurrent.futures import Future
from typing import Any

from kqueue.transport.settle import BatchNotCommitted, SettlementError, Settler
from kqueue.worker.checkpoint import CommitBatch

# A commit bounds its own steps (transport/settle.py), but the client can block in
# send_offsets_to_transaction past its timeout while the group coordinator is away (librdkafka
# issues #5456 and #5511, seen here after a broker restart). A flight past ABANDON_AFTER that has not
# sent its commit is given up: the settler replaces its producer and the batch is kept. One past
# STUCK_AFTER that cannot be given up (its commit was sent) stops the worker, loudly.
ABANDON_AFTER = 12.0
STUCK_AFTER = 60.0


class BackgroundCommitter:
    def __init__(self, settler: Settler, stuck_after: float = STUCK_AFTER,
                 abandon_after: float = ABANDON_AFTER) -> None:
        self._settler = settler
        self._stuck_after = stuck_after
        self._abandon_after = abandon_after
        self._flight: tuple[CommitBatch, Future[None], float] | None = None
        self.abandoned = 0  # stuck flights given up (each leaves a thread blocked in the client)

    @property
    def busy(self) -> bool:
        return self._flight is not None

    def flight_seconds(self) -> float:
        """How long the commit in flight has been flying (0: none)."""
        flight = self._flight
        return 0.0 if flight is None else time.monotonic() - flight[2]

    def start(self, batch: CommitBatch, group_metadata: Any) -> None:
        """Write `batch` on a commit thread; `group_metadata` is taken by the caller on the polling thread."""
        assert self._flight is None, "one commit at a time"
        future: Future[None] = Future()

        def commit() -> None:
            try:
                self._settler.commit(batch.records(), batch.offsets, group_metadata, batch.metadata)
                future.set_result(None)
            except BaseException as exc:
                future.set_exception(exc)

        # A daemon thread: one stuck inside the client must not keep the process from exiting.
        threading.Thread(target=commit, name="kqueue-commit", daemon=True).start()
        self._flight = (batch, future, time.monotonic())

    def landed(self, wait: bool = False) -> tuple[CommitBatch, BaseException | None] | None:
        """The batch in flight and its error (None: committed) once it has landed; None while it flies.

        wait: block until it lands. A flight stuck past `abandon_after` before its commit was sent
        lands as BatchNotCommitted (given up, batch kept); one past `stuck_after` as a SettlementError."""
        if self._flight is None:
            return None
        batch, future, started = self._flight
        for limit in (self._abandon_after, self._stuck_after):
            if not future.done() and wait:
                with contextlib.suppress(TimeoutError):
                    future.exception(timeout=max(0.0, limit - (time.monotonic() - started)))
            if future.done() or time.monotonic() - started < limit:
                break
            if limit == self._abandon_after and self._settler.abandon():
                self._flight = None
                self.abandoned += 1
                return batch, BatchNotCommitted(f"a commit was stuck in the Kafka client for {limit:.0f}s before "
                                                "it was sent; given up, the batch is kept")
        if not future.done():
            if time.monotonic() - started < self._stuck_after:
                return None
            self._flight = None
            return batch, SettlementError(f"a commit has not returned for {self._stuck_after:.0f}s: the Kafka "
                                          "client is stuck; stopping so the worker can start afresh")
        self._flight = None
        return batch, future.exception()
