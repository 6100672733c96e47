"""`PartitionTable`: the registry of partition owners (worker/partitions.py). Which owners are alive,
reasons that apply to every partition, wake-ups of holds, and the claim books shared by the lanes of
one queue-partition (with the reads of them under way)."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterable
from typing import Protocol

from kqueue.core import names
from kqueue.core.dedup import ClaimBook
from kqueue.core.records import TP
from kqueue.transport.consumer import ConsumerEdge
from kqueue.worker.partitions import PartitionOwner, PauseReason

_WAKE_ORDER = itertools.count()  # ties among wake-ups due at one time keep their order


class ClaimRead(Protocol):
    """A read of one queue-partition's claims under way (worker/dedup_gate.ClaimLoad)."""

    def wait(self, seconds: float) -> bool: ...
    def result(self) -> ClaimBook: ...


class PartitionTable:
    def __init__(self, edge: ConsumerEdge, is_tier_topic: Callable[[str], bool], prefix: str = "") -> None:
        self._edge = edge
        self._is_tier_topic = is_tier_topic
        self._prefix = prefix
        self.states: dict[TP, PartitionOwner] = {}
        self._wakeups: list[tuple[int, TP, int, PauseReason]] = []  # (due, partition, tie-break, why)
        self._global: set[PauseReason] = set()  # reasons every (fitting) partition has right now
        # The claims of (queue, partition), shared by that partition of each of the queue's lanes.
        self._books: dict[tuple[str, int], ClaimBook] = {}
        self._loads: dict[tuple[str, int], ClaimRead] = {}  # claims being read, on threads of their own

    def get(self, tp: TP) -> PartitionOwner | None:
        return self.states.get(tp)

    def unsettled(self) -> int:
        """Tasks handed out and not settled yet, over every owned task partition (parked ones not: a
        paused queue holds back no other queue, and no drain waits for them)."""
        return sum(s.outstanding for s in self.states.values() if not s.is_tier)

    def held(self) -> int:
        """Routed records waiting for a commit (or riding the one in flight), over every partition."""
        return sum(s.held_count() for s in self.states.values())

    def task_partitions(self) -> int:
        return sum(1 for s in self.states.values() if not s.is_tier)

    # -- ownership -----------------------------------------------------------------------------------
    def assign(self, partitions: Iterable[TP]) -> list[PartitionOwner]:
        added = []
        for tp in partitions:
            old = self.states.get(tp)
            if old is not None:
                old.end()
            owner = self.states[tp] = PartitionOwner(tp, self._is_tier_topic(tp[0]), self._edge,
                                                     names.queue_of_topic(tp[0], self._prefix))
            for reason in self._global:
                if self._applies(reason, owner):
                    owner.pause(reason)
            added.append(owner)
        return added

    def remove(self, partitions: Iterable[TP]) -> list[PartitionOwner]:
        """Revoked or lost: their ownerships end (and with them the claims of their queue-partitions:
        the next owner may claim meanwhile, so the lanes still ours read them afresh)."""
        removed = []
        for tp in partitions:
            owner = self.states.pop(tp, None)
            if owner is None:
                continue
            owner.end()
            removed.append(owner)
            book = self._books.pop((owner.queue, tp[1]), None)
            if book is not None:
                book.end()
            self._loads.pop((owner.queue, tp[1]), None)  # its result, whenever it comes, is nobody's
        return removed

    # -- claims ---------------------------------------------------------------------------------------
    def claims_of(self, owner: PartitionOwner) -> ClaimBook | None:
        """The claims of the owner's queue-partition, if read (a dead owner has none)."""
        if not owner.live:
            return None
        book = owner.claims
        if book is None or not book.live:
            book = owner.claims = self._books.get((owner.queue, owner.tp[1]))
        return book

    def keep_claims(self, owner: PartitionOwner, book: ClaimBook) -> None:
        if owner.live:
            self._books[(owner.queue, owner.tp[1])] = owner.claims = book

    def claim_load(self, owner: PartitionOwner, start: Callable[[], ClaimRead]) -> ClaimRead:
        """The read of the owner's queue-partition claims under way, started by `start` if none is."""
        where = (owner.queue, owner.tp[1])
        load = self._loads.get(where)
        if load is None:
            load = self._loads[where] = start()
        return load

    def claim_load_over(self, owner: PartitionOwner) -> None:
        self._loads.pop((owner.queue, owner.tp[1]), None)

    # -- pausing -----------------------------------------------------------------------------------
    @staticmethod
    def _applies(reason: PauseReason, owner: PartitionOwner) -> bool:
        # Backpressure bounds handler work; moving due tier records costs none. Records waiting for a
        # commit come from tiers too, so that bound holds them as well.
        return not (reason is PauseReason.BACKPRESSURE and owner.is_tier)

    def everywhere(self, reason: PauseReason) -> bool:
        """Whether `reason` applies to every (fitting) partition now."""
        return reason in self._global

    def set_everywhere(self, reason: PauseReason, on: bool) -> None:
        """Add or remove a reason on every partition it applies to, now and for later assignments."""
        if on == (reason in self._global):
            return
        if on:
            self._global.add(reason)
        else:
            self._global.discard(reason)
        for owner in self.states.values():
            if self._applies(reason, owner):
                if on:
                    owner.pause(reason)
                else:
                    owner.unpause(reason)

    def hold(self, owner: PartitionOwner, offset: int, due_at: int,
             reason: PauseReason = PauseReason.ROUTER_HOLD) -> None:
        """Hold a partition at `offset` until `due_at`; it is fetched again from there then (a tier's
        head not due yet, or a keyed task whose claims are to be read again)."""
        owner.hold_until(offset, due_at, reason)
        heapq.heappush(self._wakeups, (due_at, owner.tp, next(_WAKE_ORDER), reason))

    def wake_due(self, now_ms: int) -> int:
        """Release the holds that are due; returns how many."""
        woken = 0
        while self._wakeups and self._wakeups[0][0] <= now_ms:
            due_at, tp, _, reason = heapq.heappop(self._wakeups)
            owner = self.states.get(tp)
            if owner is not None and owner.wake(due_at, reason):
                woken += 1
        return woken

    def holds(self) -> dict[TP, int]:
        """The delay router's holds (a task partition's hold shows with its pause reason)."""
        return {tp: s.due_at for tp, s in self.states.items() if s.due_at is not None and s.is_tier}
