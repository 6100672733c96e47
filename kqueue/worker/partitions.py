"""One owner per partition: its commit watermark, held records, pause reasons and router hold.

`PartitionTable` is the only caller of the consumer edge's pause / resume / seek. A partition is
paused while it has any reason to be (backpressure, a router hold, draining) and resumed when the
last reason goes, so no part of the worker can resume what another paused.
"""

from __future__ import annotations

import enum
import heapq
import itertools
from collections.abc import Callable, Iterable

from kqueue.core.records import TP, OutRecord
from kqueue.core.watermark import PartitionWatermark
from kqueue.transport.consumer import ConsumerEdge

_HOLD_ORDER = itertools.count()  # ties among records held at one offset keep their order

class PauseReason(enum.Enum):
    BACKPRESSURE = "backpressure"  # too many unsettled tasks in this worker (task partitions only)
    ROUTER_HOLD = "router-hold"  # a tier partition whose head is not due yet
    DRAINING = "draining"  # shutting down: fetch nothing more
    CLAIMS_UNREAD = "claims-unread"  # a keyed task's claims (Q.dedup) could not be read: retried later


class PartitionState:
    """A partition while this worker owns it. `live` turns False when it is revoked or lost, so work
    from that ownership can no longer settle anything (a re-assignment gets a new state)."""

    __slots__ = ("committed", "completed_above", "done_before", "due_at", "held", "is_tier", "live", "noted",
                 "pauses", "tp", "watermark")

    def __init__(self, tp: TP, is_tier: bool) -> None:
        self.tp = tp
        self.is_tier = is_tier
        self.live = True
        self.watermark = PartitionWatermark()
        # Routed records waiting until the commit position passes their offset (a heap by offset):
        # written earlier, a crash would redeliver the offset and write them a second time.
        self.held: list[tuple[int, int, list[OutRecord]]] = []
        self.committed: int | None = None
        self.pauses: set[PauseReason] = set()
        self.due_at: int | None = None  # held (router, unread claims): when it is fetched again (epoch ms)
        # Offsets completed (no records to write) at or above the commit position: written into the
        # commit's metadata so the next owner does not run them again (core/completed.py).
        self.completed_above: set[int] = set()
        # Offsets a previous owner had completed above its last commit: settled here without running.
        self.done_before: set[int] = set()
        self.noted = ""  # the metadata of the last commit

    def hold_records(self, offset: int, records: list[OutRecord]) -> None:
        # Same offset: in the order held (a unique task's claim, then its release), never by address.
        heapq.heappush(self.held, (offset, next(_HOLD_ORDER), records))

    def release_records(self, position: int) -> list[tuple[int, list[OutRecord]]]:
        """Held records of offsets below `position` (covered by a commit to it), in offset order."""
        out: list[tuple[int, list[OutRecord]]] = []
        while self.held and self.held[0][0] < position:
            offset, _, records = heapq.heappop(self.held)
            out.append((offset, records))
        return out

    def describe(self) -> dict[str, object]:
        return {"outstanding": self.watermark.outstanding, "held": len(self.held), "committed": self.committed,
                "paused": sorted(r.value for r in self.pauses), "due_at": self.due_at}


class PartitionTable:
    def __init__(self, edge: ConsumerEdge, is_tier_topic: Callable[[str], bool]) -> None:
        self._edge = edge
        self._is_tier_topic = is_tier_topic
        self.states: dict[TP, PartitionState] = {}
        self._wakeups: list[tuple[int, TP, int, PauseReason]] = []  # (due, partition, tie-break, why)
        # Task partitions held back now (records of theirs fetched meanwhile are not handed out).
        self.held_tasks: set[TP] = set()
        self._global: set[PauseReason] = set()  # reasons every (fitting) partition has right now

    def get(self, tp: TP) -> PartitionState | None:
        return self.states.get(tp)

    def unsettled(self) -> int:
        """Tasks handed out and not settled yet, over every owned task partition."""
        return sum(s.watermark.outstanding for s in self.states.values() if not s.is_tier)

    def held(self) -> int:
        """Settled tasks whose routed records wait for a commit, over every owned task partition."""
        return sum(len(s.held) for s in self.states.values() if not s.is_tier)

    # -- ownership -----------------------------------------------------------------------------------
    def assign(self, partitions: Iterable[TP]) -> list[PartitionState]:
        added = []
        for tp in partitions:
            state = self.states[tp] = PartitionState(tp, self._is_tier_topic(tp[0]))
            for reason in self._global:
                if self._applies(reason, state):
                    state.pauses.add(reason)
            if state.pauses:
                self._edge.pause([tp])
            added.append(state)
        return added

    def remove(self, partitions: Iterable[TP]) -> list[PartitionState]:
        """Revoked or lost: forget them (held records are dropped; the next owner starts afresh)."""
        removed = []
        for tp in partitions:
            state = self.states.pop(tp, None)
            self.held_tasks.discard(tp)
            if state is not None:
                state.live = False
                removed.append(state)
        return removed

    # -- pausing -----------------------------------------------------------------------------------
    @staticmethod
    def _applies(reason: PauseReason, state: PartitionState) -> bool:
        # Backpressure bounds handler work; moving due tier records costs none.
        return not (reason is PauseReason.BACKPRESSURE and state.is_tier)

    def pause(self, state: PartitionState, reason: PauseReason) -> None:
        if reason not in state.pauses:
            if not state.pauses:
                self._edge.pause([state.tp])
            state.pauses.add(reason)

    def unpause(self, state: PartitionState, reason: PauseReason) -> None:
        if reason in state.pauses:
            state.pauses.discard(reason)
            if not state.pauses:
                self._edge.resume([state.tp])

    def set_everywhere(self, reason: PauseReason, on: bool) -> None:
        """Add or remove a reason on every partition it applies to, now and for later assignments."""
        if on == (reason in self._global):
            return
        if on:
            self._global.add(reason)
        else:
            self._global.discard(reason)
        newly_paused: list[TP] = []
        resumed: list[TP] = []
        for state in self.states.values():
            if not self._applies(reason, state):
                continue
            was_paused = bool(state.pauses)
            if on:
                state.pauses.add(reason)
            else:
                state.pauses.discard(reason)
            if bool(state.pauses) != was_paused:
                (newly_paused if on else resumed).append(state.tp)
        if newly_paused:
            self._edge.pause(newly_paused)
        if resumed:
            self._edge.resume(resumed)

    # -- holds: the delay router's, and task partitions whose claims could not be read --------------
    def hold(self, state: PartitionState, offset: int, due_at: int,
             reason: PauseReason = PauseReason.ROUTER_HOLD) -> None:
        """Hold a partition at `offset` until `due_at`; it is fetched again from there then (a tier's
        head not due yet, or a keyed task whose claims are to be read again)."""
        self.pause(state, reason)
        self._edge.seek(state.tp, offset)
        state.due_at = due_at
        if not state.is_tier:
            self.held_tasks.add(state.tp)
        heapq.heappush(self._wakeups, (due_at, state.tp, next(_HOLD_ORDER), reason))

    def wake_due(self, now_ms: int) -> int:
        """Release the holds that are due; returns how many."""
        woken = 0
        while self._wakeups and self._wakeups[0][0] <= now_ms:
            due_at, tp, _, reason = heapq.heappop(self._wakeups)
            state = self.states.get(tp)
            if state is not None and state.due_at == due_at:
                state.due_at = None
                self.held_tasks.discard(tp)
                self.unpause(state, reason)
                woken += 1
        return woken

    def holds(self) -> dict[TP, int]:
        """The delay router's holds (a task partition's hold shows with its pause reason)."""
        return {tp: s.due_at for tp, s in self.states.items() if s.due_at is not None and s.is_tier}
