"""What each task's outcome writes, handed to the checkpoint: the worker's settle decisions.

New tasks are admitted in offset order (a previous owner's completions skipped, keyed tasks through
the dedup gate); finished ones become a completion, a kept result, a retry, a dead letter or a
cancel. Records go to the checkpoint, which writes them when the commit passes their task.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from kqueue.core.control import cancel_applies
from kqueue.core.headers import now_ms
from kqueue.core.records import SETTLEMENT_OF_KIND, OutRecord
from kqueue.sdk.app import App
from kqueue.sdk.middleware import Hooks
from kqueue.worker.checkpoint import Checkpoint
from kqueue.worker.dedup_gate import Admission, ClaimsUnread, DedupGate
from kqueue.worker.events import Completions, settle_event
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


class Outcomes:
    def __init__(self, app: App, checkpoint: Checkpoint, gate: DedupGate, hooks: Hooks, worker_id: str,
                 cancels: set[str] | None) -> None:
        self.app = app
        self._prefix = app.topic_prefix
        self._checkpoint = checkpoint
        self._gate = gate
        self._hooks = hooks
        self._worker_id = worker_id
        self._cancels = cancels  # pending cancels (filled by another thread), None without a watch

    # -- arriving --------------------------------------------------------------------------------------
    def admit(self, decoded: Iterable[tuple[WorkItem, Failure | None]], now: int) -> tuple[list[WorkItem], int]:
        """(the tasks to run, how many a previous owner had completed); the rest are settled here."""
        runnable: list[WorkItem] = []
        skipped = 0
        held = self._checkpoint.held_tasks  # partitions held back: what was fetched of them waits
        for item, failure in decoded:
            if held and (item.topic, item.partition) in held:
                continue  # fetched again from the held offset when the hold ends
            keyed = failure is None and self._gate.keyed(item)
            if keyed and not self._gate.loaded(item):
                try:
                    self._gate.load(item)
                except ClaimsUnread as exc:  # never guessed: this partition waits, the others go on
                    log.warning("%s", exc)
                    self._checkpoint.hold_for_claims(item, exc.retry_in, now)
                    continue
            # Track in offset order (before anything can settle), then split by what to do.
            if not self._checkpoint.track(item):
                continue  # partition no longer ours
            done = self._checkpoint.done_before(item)
            # Keyed tasks are admitted in log order, also those not run again (their claims count).
            admission = self._gate.admit(item, now, done) if keyed else None
            if admission is not None and admission.claim is not None and item.owner is not None:
                item.owner.hold_records(item.offset, [admission.claim])
            if done:
                skipped += 1  # completed before a crash or hand-over: not run again
            elif admission is not None and not admission.run:
                self._duplicate(item, admission, now)
            elif failure is None:
                runnable.append(item)
            else:
                self.fail(item, failure, now)
        return runnable, skipped

    def due(self, items: Iterable[WorkItem], now: int) -> None:
        """Tier records whose wait is over: on to their target, or to a shorter tier."""
        for item in items:
            if self._checkpoint.track(item):
                self.route(item, route_due(item, self.app.tiers, self._prefix, now))

    def _duplicate(self, item: WorkItem, admission: Admission, now: int) -> None:
        holder = admission.holder.task_id if admission.holder is not None else "?"
        if admission.unique:
            self.route(item, duplicate_records(item, holder, self._prefix, now))
        else:
            self._checkpoint.duplicate(item)  # same id as the task that ran: nothing to say about it

    # -- finished --------------------------------------------------------------------------------------
    def finished(self, outcomes: list[Outcome], now: int) -> None:
        done = []
        pending = self._cancels
        for item, failure in outcomes:
            if pending and failure is not None and not failure.cancelled and cancel_applies(pending, item):
                # Cancelled while it ran and it failed (or was interrupted): cancelled, never retried.
                failure = Failure.cancel("cancelled while it ran")
            elif pending and failure is None and item.quick_id in pending and item.owner is not None:
                item.owner.hold_records(item.offset, [retire_cancel(item, self._prefix)])  # done anyway
            if failure is None:
                if item.task is not None and item.task.keep_result:
                    self.route(item, result_records(item, self._prefix, now, self._worker_id))
                else:
                    if item.claim_key is not None:
                        self._release(item)
                    done.append(item)
            elif not self._checkpoint.owns(item):
                continue
            elif failure.cancelled:
                self.route(item, cancel_records(item, self._prefix, now), failure)
            else:
                self.fail(item, failure, now)
        if self._hooks.settle:
            # `Checkpoint.owns`, inlined (per task): an outcome of an earlier ownership settles nothing.
            done = [item for item in done if (owner := item.owner) is not None and owner.live]
            if done:
                self._hooks.emit(self._hooks.settle, Completions(done, now))
        self._checkpoint.completed(done)

    def _release(self, item: WorkItem) -> None:
        """A unique task is over: its key is free (the tombstone rides with its commit)."""
        if item.claim_key is not None and item.owner is not None:
            released = self._gate.release(item)
            if released is not None:
                item.owner.hold_records(item.offset, [released])

    def fail(self, item: WorkItem, failure: Failure, now: int) -> None:
        self.route(item, route_failure(item, failure, self.app.tiers, self._prefix, now), failure)

    def route(self, item: WorkItem, records: list[OutRecord], failure: Failure | None = None) -> None:
        if item.claim_key is not None and records[0].kind in FINAL_KINDS:
            released = self._gate.release(item)
            if released is not None:
                records = [*records, released]
        if self._checkpoint.route(item, records) and self._hooks.settle:
            event = settle_event(item, SETTLEMENT_OF_KIND[records[0].kind], failure, now_ms(), records[0].topic)
            self._hooks.emit(self._hooks.settle, [event])
