"""Commits in the background: a transaction's round trips (tens of ms on a busy broker) never hold
up the poll loop, so a task enqueued during a commit still starts within milliseconds.

At most one commit is in flight. The loop prepares a batch (its own state, its own thread), the
committer thread writes it, and the loop accounts for the outcome on a later turn. Whoever needs
the committed state now (a revoke, the drain) waits for the flight to land first.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from kqueue.transport.settle import Settler
from kqueue.worker.checkpoint import CommitBatch


class BackgroundCommitter:
    def __init__(self, settler: Settler) -> None:
        self._settler = settler
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kqueue-commit")
        self._flight: tuple[CommitBatch, Future[None]] | None = None

    @property
    def busy(self) -> bool:
        return self._flight is not None

    @property
    def tasks_in_flight(self) -> int:
        """Settled tasks whose routed records ride the commit in flight (out of their holds meanwhile)."""
        return len(self._flight[0].released) if self._flight is not None else 0

    def start(self, batch: CommitBatch, group_metadata: Any) -> None:
        """Write `batch` on the commit thread; `group_metadata` is taken by the caller on the polling thread."""
        assert self._flight is None, "one commit at a time"
        self._flight = (batch, self._pool.submit(self._settler.commit, batch.records(), batch.offsets,
                                                 group_metadata))

    def landed(self, wait: bool = False) -> tuple[CommitBatch, BaseException | None] | None:
        """The batch in flight and its error (None: committed) once it has landed; None while flying."""
        if self._flight is None:
            return None
        batch, future = self._flight
        if not wait and not future.done():
            return None
        self._flight = None
        return batch, future.exception()

    def close(self) -> None:
        self._pool.shutdown(wait=True)
