"""One owner per partition: everything the worker knows about a partition while it owns it.

`PartitionOwner` holds the commit watermark, the completed offsets above it, routed records waiting
for a commit (and those riding the commit in flight), pause reasons, the router's or a claim read's
hold, and a reference to its queue-partition's claims. It changes all of it only through its own
methods, and it is the only caller of the consumer edge's pause / resume / seek for its partition.
A revoke or loss kills it (`live` False): every method is then a no-op, so work of an earlier
ownership can never reach the next one's state, even when the same worker gets the partition back.

The registry of owners (`PartitionTable`) is in worker/partition_table.py.
"""

from __future__ import annotations

import enum
import heapq
import itertools
import time
from typing import TYPE_CHECKING

from kqueue.core.completed import encode as encode_completed
from kqueue.core.dedup import ClaimBook
from kqueue.core.records import TP, OutRecord
from kqueue.core.watermark import PartitionWatermark
from kqueue.transport.consumer import ConsumerEdge

if TYPE_CHECKING:
    from kqueue.worker.pausing import PausedWork

_HOLD_ORDER = itertools.count()  # ties among records held at one offset keep their order


class PauseReason(enum.Enum):
    BACKPRESSURE = "backpressure"  # too many unsettled tasks in this worker (task partitions only)
    COMMITS_BEHIND = "commits-behind"  # too many routed records wait for a commit (commits failing)
    FAIR_SHARE = "fair-share"  # this partition has its share of the worker's unsettled tasks
    PRIORITY = "priority"  # a lower lane at its share of the worker's unsettled tasks while a higher lane waits
    RATE = "rate"  # holds tasks waiting for a rate limit's token while the worker holds its bound of those
    AHEAD = "ahead"  # its oldest unsettled task is too far behind (the completed-above map would not fit)
    ROUTER_HOLD = "router-hold"  # a tier partition whose head is not due yet
    DRAINING = "draining"  # shutting down: fetch nothing more
    CLAIMS_UNREAD = "claims-unread"  # a keyed task's claims (Q.dedup) could not be read: retried later
    CLAIMS_LOADING = "claims-loading"  # a keyed task's claims are being read (on a thread of their own)
    REFUSED = "refused"  # Kafka refuses a record of its and nothing can stand in for it: tried again later
    PAUSED = "paused"  # its queue is paused (`kqueue queue pause`): nothing of it starts (worker/pausing.py)


# Reasons that pause by cutting: the partition is sought back to a record not handed out, and records
# of it fetched meanwhile are dropped (fetched again from there on resume).
_CUTTING = frozenset({PauseReason.ROUTER_HOLD, PauseReason.CLAIMS_UNREAD, PauseReason.CLAIMS_LOADING,
                      PauseReason.AHEAD, PauseReason.FAIR_SHARE, PauseReason.PAUSED})



class CommitSlice:
    """What one owner contributes to a commit: its position, the metadata, the records released."""

    __slots__ = ("metadata", "owner", "position", "released")

    def __init__(self, owner: PartitionOwner, position: int, metadata: str,
                 released: list[tuple[int, list[OutRecord]]]) -> None:
        self.owner = owner
        self.position = position
        self.metadata = metadata
        self.released = released

    def record_count(self) -> int:
        return sum(len(records) for _, records in self.released)


class PartitionOwner:
    """A partition while this worker owns it."""

    __slots__ = ("_completed_dirty", "_done_before", "_edge", "_held", "_in_commit", "_noted_for",
                 "claim_failures", "claims", "committed", "completed_above", "cut", "due_at", "is_tier",
                 "isolated_until", "live", "noted", "paused_work", "pauses", "queue", "stop_at", "tp", "watermark")

    def __init__(self, tp: TP, is_tier: bool, edge: ConsumerEdge, queue: str = "") -> None:
        self.tp = tp
        self.is_tier = is_tier
        self.queue = queue
        self.live = True
        self._edge = edge
        self.watermark = PartitionWatermark()
        # Routed records waiting until the commit position passes their offset (a heap by offset):
        # written earlier, a crash would redeliver the offset and write them a second time.
        self._held: list[tuple[int, int, list[OutRecord]]] = []
        self._in_commit = 0  # routed records out with the commit in flight (back here if it fails)
        self.committed: int | None = None
        self.pauses: set[PauseReason] = set()
        self.due_at: int | None = None  # held (router, unread claims): when it is fetched again (epoch ms)
        self.cut: int | None = None  # sought back to this offset: records of it fetched meanwhile are dropped
        # The first offset too far past the commit position (bounds.py sets it as the position moves):
        # the admission cuts there, so one stuck task never makes it remember more than MAX_AHEAD.
        self.stop_at = 1 << 62
        # While Kafka refuses one of its records: left out of commits until then (monotonic seconds).
        self.isolated_until = 0.0
        # Offsets completed (no records to write) at or above the commit position: written into the
        # commit's metadata so the next owner does not run them again (core/completed.py).
        self.completed_above: set[int] = set()
        self._completed_dirty = False
        self._noted_for: int | None = None  # the position `noted` was encoded for
        # Offsets a previous owner had completed above its last commit: settled here without running.
        self._done_before: set[int] = set()
        self.noted = ""  # the metadata of the last commit
        self.claims: ClaimBook | None = None  # its queue-partition's claims, once read
        self.claim_failures = 0  # reads of those claims failed in a row (for the back-off)
        # Once its queue was paused: its parked tasks, and whether runners may start its tasks.
        self.paused_work: PausedWork | None = None

    # -- arriving -----------------------------------------------------------------------------------
    def inherit(self, done_before: set[int]) -> None:
        """What the last owner had completed above its final commit (from the commit metadata)."""
        self._done_before = done_before

    def track(self, offset: int) -> bool:
        """Take a handed-out record (in offset order) into this ownership; False once it is dead."""
        if not self.live:
            return False
        self.watermark.track(offset)
        return True

    def settle_if_done_before(self, offset: int) -> bool:
        """A tracked record a previous owner had completed: settled here, True (not to run again)."""
        done = self._done_before
        if not done or offset not in done:
            return False
        done.discard(offset)
        self.complete(offset)  # still above the position: say so in the next commit too
        return True

    # -- settling (no-ops once the ownership is over) ---------------------------------------------------
    def complete(self, offset: int) -> bool:
        if not self.live:
            return False
        self.watermark.settle(offset)
        self.completed_above.add(offset)
        self._completed_dirty = True
        return True

    def complete_many(self, offsets: list[int]) -> int:
        """`complete` for each offset (a batch of completions, one call); how many were settled."""
        if not self.live or not offsets:
            return 0
        settle = self.watermark.settle
        for offset in offsets:
            settle(offset)
        self.completed_above.update(offsets)
        self._completed_dirty = True
        return len(offsets)

    def route(self, offset: int, records: list[OutRecord]) -> bool:
        """Settle `offset` by `records`, written when the commit position passes it."""
        if not self.live:
            return False
        self.hold_records(offset, records)
        self.watermark.settle(offset)
        return True

    def hold_records(self, offset: int, records: list[OutRecord]) -> None:
        """Records to write once the commit passes `offset` (a claim, a retired cancel), with no settling."""
        if self.live:
            # Same offset: in the order held (a unique task's claim, then its release), never by address.
            heapq.heappush(self._held, (offset, next(_HOLD_ORDER), records))

    @property
    def outstanding(self) -> int:
        """Tracked tasks not settled, not counting those parked by a pause (they wait for no handler)."""
        paused = self.paused_work
        return self.watermark.outstanding - (len(paused.parked) if paused is not None else 0)

    def held_count(self) -> int:
        """Settled tasks whose routed records wait for a commit, here or in the flight."""
        return len(self._held) + self._in_commit

    def ahead(self) -> int:
        """How far the newest tracked offset is past the commit position (0: nothing pins it)."""
        newest = self.watermark.newest
        position = self.watermark.position()
        return 0 if newest is None or position is None else max(0, newest + 1 - position)

    # -- committing -----------------------------------------------------------------------------------
    def take_for_commit(self, max_records: int) -> CommitSlice | None:
        """What the next commit writes for this partition, at most `max_records` routed records (at
        least one offset's worth, so a commit always moves): the position, and the records below it.
        None when nothing changed since the last commit."""
        if not self.live or (self.isolated_until and time.monotonic() < self.isolated_until):
            return None
        position = self.watermark.position()
        if position is None:
            return None
        released: list[tuple[int, list[OutRecord]]] = []
        count = 0
        held = self._held
        while held and held[0][0] < position:
            if released and count + len(held[0][2]) > max_records and held[0][0] != released[-1][0]:
                position = held[0][0]  # the rest wait for the next commit; everything below is settled
                break
            offset, _, records = heapq.heappop(held)
            released.append((offset, records))
            count += len(records)
        metadata = self._metadata(position)
        # Committed again at the same position when more completed above it: cheap, and a crash
        # then re-runs less (a slow task holds the position while the rest of its partition runs).
        if not released and position == self.committed and metadata == self.noted:
            return None
        self._in_commit += len(released)
        return CommitSlice(self, position, metadata, released)

    def _metadata(self, position: int) -> str:
        if not self.completed_above:
            return ""
        if not self._completed_dirty and position == self._noted_for:
            return self.noted  # nothing completed since: no re-encoding on the poll thread
        self.completed_above = {o for o in self.completed_above if o >= position}
        self._completed_dirty = False
        return encode_completed(position, self.completed_above)

    def commit_landed(self, piece: CommitSlice) -> None:
        self._in_commit -= len(piece.released)
        if self.live:
            self.committed = piece.position
            self.noted = piece.metadata
            self._noted_for = piece.position
            if self.isolated_until:
                self.isolated_until = 0.0
                self.unpause(PauseReason.REFUSED)

    def isolate(self, seconds: float) -> None:
        """Kafka refuses one of this partition's records and nothing can stand in for it: keep its
        records (nothing is lost), stop fetching it and leave it out of commits for `seconds`, so the
        worker's other partitions go on committing; then it is tried again."""
        if self.live:
            self.isolated_until = time.monotonic() + seconds
            self.pause(PauseReason.REFUSED)

    def commit_failed(self, piece: CommitSlice, records_back: list[tuple[int, list[OutRecord]]]) -> None:
        """The commit did not land: its records wait here again (a dead ownership drops them)."""
        self._in_commit -= len(piece.released)
        for offset, records in records_back:
            self.hold_records(offset, records)

    # -- pausing: this owner alone pauses, resumes and seeks its partition --------------------------
    def pause(self, reason: PauseReason) -> None:
        if self.live and reason not in self.pauses:
            if not self.pauses:
                self._edge.pause([self.tp])
            self.pauses.add(reason)

    def unpause(self, reason: PauseReason) -> None:
        if self.live and reason in self.pauses:
            self.pauses.discard(reason)
            if reason in _CUTTING and not (self.pauses & _CUTTING):
                self.cut = None
            if not self.pauses:
                self._edge.resume([self.tp])

    def cut_at(self, offset: int, reason: PauseReason) -> None:
        """Pause at `offset`, a record not handed out: fetched again from there when resumed."""
        if not self.live:
            return
        self.pause(reason)
        self._edge.seek(self.tp, offset)
        self.cut = offset if self.cut is None else min(self.cut, offset)

    def hold_until(self, offset: int, due_at: int, reason: PauseReason) -> None:
        """Cut at `offset` until `due_at` (a tier's head not due yet, claims to read again)."""
        self.cut_at(offset, reason)
        self.due_at = due_at

    def wake(self, due_at: int, reason: PauseReason) -> bool:
        if not self.live or self.due_at != due_at:
            return False
        self.due_at = None
        self.unpause(reason)
        return True

    def end(self) -> None:
        """Revoked or lost: this ownership is over. Held records are dropped (the next owner decides
        those tasks afresh); the edge is not touched (the partition is no longer ours)."""
        self.live = False
        self._held.clear()
        self.claims = None
        self.paused_work = None  # its parked tasks are redelivered to the next owner (never committed past)

    def describe(self) -> dict[str, object]:
        return {"outstanding": self.watermark.outstanding, "held": len(self._held), "committed": self.committed,
                "paused": sorted(r.value for r in self.pauses), "due_at": self.due_at, "ahead": self.ahead()}

