"""What each task's outcome writes, handed to the checkpoint: the worker's settle decisions.

New tasks are admitted in offset order (a previous owner's completions skipped, keyed tasks through
the dedup gate); finished ones become a completion, a kept result, a retry, a dead letter or a
cancel. Records go to the checkpoint, which writes them when the commit passes their task.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from kqueue.core.control import cancel_applies
from kqueue.core.dedup import ClaimBook
from kqueue.core.headers import now_ms
from kqueue.core.ordering import Admit
from kqueue.core.records import SETTLEMENT_OF_KIND, OutRecord, RecordKind
from kqueue.sdk.app import App
from kqueue.sdk.middleware import Hooks
from kqueue.worker.bounds import NO_SHARE
from kqueue.worker.checkpoint import Checkpoint
from kqueue.worker.dedup_gate import Admission, ClaimLoad, ClaimsUnread, DedupGate
from kqueue.worker.events import Completions, settle_event
from kqueue.worker.ordering import OrderedKeys
from kqueue.worker.partition_table import PartitionTable
from kqueue.worker.partitions import PartitionOwner, PauseReason
from kqueue.worker.routing import (
    FINAL_KINDS,
    cancel_records,
    duplicate_records,
    result_records,
    retire_cancel,
    route_due,
    route_failure,
)
from kqueue.worker.work import Failure, Outcome, WorkItem

log = logging.getLogger("kqueue.worker")
CLAIM_SWEEP_MS = 60_000  # how often a queue-partition's expired claims are forgotten
CLAIM_LOAD_INLINE = 0.05  # seconds a claims read may take before its partition is held and rechecked
CLAIM_LOAD_RECHECK_MS = 100
# A parked task whose blocker was dead-lettered with ordered="follow" (README, "Ordered retries").
_FOLLOWS = Failure.unrunnable("FollowsDeadLetter", "parked behind a task of its key that was dead-lettered "
                              "(ordered=\"follow\")")


class Outcomes:
    def __init__(self, app: App, table: PartitionTable, checkpoint: Checkpoint, gate: DedupGate, hooks: Hooks,
                 worker_id: str, cancels: set[str] | None, ordering: OrderedKeys | None = None) -> None:
        self.app = app
        self._prefix = app.topic_prefix
        self._table = table
        self._counts = checkpoint.counts
        self._checkpoint = checkpoint
        self._gate = gate
        self._hooks = hooks
        self._worker_id = worker_id
        self._cancels = cancels  # pending cancels (filled by another thread), None without a watch
        self._ordering = ordering  # ordered retries' blocked keys (worker/ordering.py), None without ordered types

    # -- arriving --------------------------------------------------------------------------------------
    def admit(self, decoded: Iterable[tuple[WorkItem, Failure | None]], now: int,
              share: int) -> tuple[list[WorkItem], int]:
        """(the tasks to run, how many a previous owner had completed); the rest are settled here.

        A partition with `share` unsettled tasks is cut at its next record and fetched again from there
        once it has worked some off, so one partition's backlog never crowds out the others' (the share
        is in force only while a full worker would hold seconds of work: worker/bounds.py)."""
        runnable: list[WorkItem] = []
        skipped = 0
        owners = self._table.states
        keyed_of, ordering = self._gate.keyed, self._ordering
        fair = share < NO_SHARE  # no share in force (cheap handlers, one partition): no check per record
        tp: tuple[str, int] | None = None
        owner: PartitionOwner | None = None
        for item, failure in decoded:
            if tp is None or item.partition != tp[1] or item.topic != tp[0]:
                tp = (item.topic, item.partition)  # a batch comes in runs of one partition: one lookup each
                owner = owners.get(tp)
            if owner is None or owner.cut is not None:
                continue  # not ours, or cut: fetched again from the cut when it resumes
            if owner.paused_work is not None and owner.paused_work.stopped:
                owner.cut_at(item.offset, PauseReason.PAUSED)  # fetched before its queue paused: again on resume
                continue
            if item.offset >= owner.stop_at:
                owner.cut_at(item.offset, PauseReason.AHEAD)  # too far past a task that does not settle
                continue
            if fair and owner.watermark.outstanding >= share:
                owner.cut_at(item.offset, PauseReason.FAIR_SHARE)  # fetched again from here once under it
                continue
            if failure is None and ordering is None and not keyed_of(item):
                # The common case (no key to check, no order to keep): tracked and run.
                if not owner.track(item.offset):
                    continue
                item.owner = owner
                if owner.settle_if_done_before(item.offset):
                    skipped += 1  # completed before a crash or hand-over: not run again
                else:
                    runnable.append(item)
                continue
            keyed = failure is None and keyed_of(item)
            # An ordered queue's keyed task needs its partition's blocks, read with the claims.
            ordered = failure is None and ordering is not None and ordering.covers(item)
            book = self._claims(owner, item, now) if keyed or ordered else None
            if (keyed or ordered) and book is None:
                continue  # its claims could not be read: the partition is held at it
            # Track in offset order (before anything can settle), then split by what to do.
            if not owner.track(item.offset):
                continue
            item.owner = owner
            done = owner.settle_if_done_before(item.offset)
            # Keyed tasks are admitted in log order, also those not run again (their claims count).
            admission = self._gate.admit(item, book, now, done) if keyed and book is not None else None
            if admission is not None and admission.claim is not None:
                owner.hold_records(item.offset, [admission.claim])
            if done:
                skipped += 1  # completed before a crash or hand-over: not run again
            elif admission is not None and not admission.run:
                self._duplicate(item, admission, now)
            elif failure is None:
                if ordered and book is not None and self._blocked(item, book, now):
                    continue
                runnable.append(item)
            else:
                self.fail(item, failure, now)
        return runnable, skipped

    def _blocked(self, item: WorkItem, book: ClaimBook, now: int) -> bool:
        """A task of a blocked key: parked behind its retry, or dead-lettered after it; True when settled so."""
        assert self._ordering is not None
        verdict = self._ordering.admit(item, book)
        if verdict is Admit.PARK:
            self.route(item, self._ordering.park(item, book))
        elif verdict is Admit.FOLLOW:
            self.fail(item, _FOLLOWS, now)
        return verdict is not Admit.RUN

    def _claims(self, owner: PartitionOwner, item: WorkItem, now: int) -> ClaimBook | None:
        """The claims of the item's queue-partition; None (and the partition held at the item) while
        they are being read, on a thread of their own, or when they cannot be read: never guessed,
        and the worker's other partitions go on meanwhile."""
        table = self._table
        book = table.claims_of(owner)
        if book is None:
            load = table.claim_load(owner, lambda: ClaimLoad(self._gate, item, owner.claim_failures))
            if not load.wait(CLAIM_LOAD_INLINE):
                table.hold(owner, item.offset, now + CLAIM_LOAD_RECHECK_MS, PauseReason.CLAIMS_LOADING)
                return None
            table.claim_load_over(owner)
            try:
                book = load.result()
            except ClaimsUnread as exc:
                owner.claim_failures += 1
                log.warning("%s", exc)
                table.hold(owner, item.offset, now + int(exc.retry_in * 1000), PauseReason.CLAIMS_UNREAD)
                return None
            owner.claim_failures = 0
            table.keep_claims(owner, book)
        if book.next_sweep_ms <= now:
            # Expired claims leave memory (Q.dedup's retention deletes them there).
            book.next_sweep_ms = now + CLAIM_SWEEP_MS
            book.sweep(now)
        return book

    def due(self, items: Iterable[WorkItem], now: int) -> None:
        """Tier records whose wait is over: on to their target, or to a shorter tier."""
        table = self._table
        for item in items:
            owner = table.get((item.topic, item.partition))
            if owner is not None and owner.track(item.offset):
                item.owner = owner
                self.route(item, route_due(item, self.app.tiers, self._prefix, now))

    def _duplicate(self, item: WorkItem, admission: Admission, now: int) -> None:
        holder = admission.holder.task_id if admission.holder is not None else "?"
        if admission.unique:
            self.route(item, duplicate_records(item, holder, self._prefix, now))
        elif item.owner is not None and item.owner.complete(item.offset):
            self._counts.duplicates += 1  # same id as the task that ran: nothing to say about it

    # -- finished --------------------------------------------------------------------------------------
    def finished(self, outcomes: list[Outcome], now: int) -> None:
        done = []
        pending = self._cancels
        for item, failure in outcomes:
            owner = item.owner
            if owner is None or not owner.live:
                if item.held_lane and self._ordering is not None:
                    self._ordering.unhold(item)  # its queued items were dropped with the partition
                continue  # an outcome of an earlier ownership settles nothing
            if pending and failure is not None and not failure.cancelled and cancel_applies(pending, item):
                # Cancelled while it ran and it failed (or was interrupted): cancelled, never retried.
                failure = Failure.cancel("cancelled while it ran")
            elif pending and failure is None and item.quick_id in pending:
                owner.hold_records(item.offset, [retire_cancel(item, self._prefix)])  # done anyway
            if failure is None:
                if item.task is not None and item.task.keep_result:
                    self.route(item, result_records(item, self._prefix, now, self._worker_id))
                else:
                    if item.claim_key is not None:
                        self._release(item, owner)
                    done.append(item)
            elif failure.cancelled:
                self.route(item, cancel_records(item, self._prefix, now), failure)
            else:
                self.fail(item, failure, now)
        if done:
            if self._hooks.settle:
                self._hooks.emit(self._hooks.settle, Completions(done, now))
            completed = 0
            run_owner: PartitionOwner | None = None
            run: list[int] = []  # outcomes come in runs of one partition: completed per owner at once
            for item in done:
                if item.blocks_key:  # its key's blocker: its settlement writes what releases the key
                    completed += 1
                    self.route(item, [])
                    continue
                if item.owner is not run_owner:
                    if run_owner is not None:
                        completed += run_owner.complete_many(run)
                    run_owner, run = item.owner, []
                run.append(item.offset)
            if run_owner is not None:
                completed += run_owner.complete_many(run)
            self._counts.completed += completed

    def _release(self, item: WorkItem, owner: PartitionOwner) -> None:
        """A unique task is over: its key is free (the tombstone rides with its commit)."""
        released = self._gate.release(item, self._table.claims_of(owner))
        if released is not None:
            owner.hold_records(item.offset, [released])

    def fail(self, item: WorkItem, failure: Failure, now: int) -> None:
        self.route(item, route_failure(item, failure, self.app.tiers, self._prefix, now), failure)

    def route(self, item: WorkItem, records: list[OutRecord], failure: Failure | None = None) -> None:
        owner = item.owner
        if owner is None or not owner.live:
            return
        final = not records or records[0].kind in FINAL_KINDS  # [] is a completion (a blocker's)
        if item.claim_key is not None and final:
            released = self._gate.release(item, self._table.claims_of(owner))
            if released is not None:
                records = [*records, released]
        if self._ordering is not None and self._ordering.covers(item):
            ordered = self._ordered(item, records, final, owner)
            if ordered is None:
                return  # its key's next parked task is being read: settled when it is (`releases`)
            records = ordered
        self._hold(item, records, failure)

    def _hold(self, item: WorkItem, records: list[OutRecord], failure: Failure | None) -> None:
        owner = item.owner
        if owner is not None and not records:
            owner.complete(item.offset)  # a blocker whose ownership's blocks are gone: a plain completion
            return
        if owner is not None and owner.route(item.offset, records) and self._hooks.settle:
            outcome = SETTLEMENT_OF_KIND.get(records[0].kind)
            if outcome is not None:
                event = settle_event(item, outcome, failure, now_ms(), records[0].topic)
                self._hooks.emit(self._hooks.settle, [event])

    def _ordered(self, item: WorkItem, records: list[OutRecord], final: bool,
                 owner: PartitionOwner) -> list[OutRecord] | None:
        """Ordered retries: a retry blocks its key (what queued behind it is parked); a blocker's end
        releases the key's next parked task (or the key); None while that task is read."""
        ordering = self._ordering
        assert ordering is not None
        book = self._table.claims_of(owner)
        if book is None or not book.live:
            ordering.unhold(item)
            return records
        kind = records[0].kind if records else None
        if kind is RecordKind.RETRY and item.task is not None and item.task.ordered:
            records = ordering.retrying(item, book, records)
            for behind in ordering.held_behind(item):
                self.route(behind, ordering.park(behind, book))
            return records
        if not final:
            return records  # a park entry, a delivery: nothing about the key changes
        dead_lettered = kind is RecordKind.DEAD_LETTER
        if item.held_lane and dead_lettered and item.blocks_key:
            for behind in ordering.held_behind(item):  # ordered="follow": they follow it
                self.fail(behind, _FOLLOWS, now_ms())
        ordering.unhold(item)
        return ordering.finishing(item, book, records, dead_lettered)

    def releases(self) -> None:
        """Blockers whose key's next parked task has been read: settled with its copy."""
        if self._ordering is not None and self._ordering.reading:
            released = self._ordering.ready(lambda i: self._table.claims_of(i.owner) if i.owner is not None else None)
            for item, records in released:
                self._hold(item, records, None)
            if released:
                self._checkpoint.hurry()  # the copy runs once committed: do not wait out the interval
