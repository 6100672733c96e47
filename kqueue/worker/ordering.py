"""The worker's side of ordered retries: park a blocked key's later tasks, release them one by one.

The blocks live on the partition owner's ClaimBook (read with its claims, ended with its
ownership); the decisions and the record formats are in core/ordering.py. This module builds the
records each step writes, and reads a parked task back (on a thread of its own: the poll loop
never waits for Kafka) when its turn comes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable
from functools import partial
from typing import Protocol

from kqueue.core import names
from kqueue.core.dedup import ClaimBook
from kqueue.core.headers import HeaderList, now_ms
from kqueue.core.ordering import PARK_VALUE, Admit, KeyBlock, admit, block_key, encode_block, park_key
from kqueue.core.records import TP, OutRecord, RecordKind, dedup_record, status_record
from kqueue.core.retry import retries
from kqueue.core.status import TaskEvent
from kqueue.sdk.app import App
from kqueue.transport.consumer import Record
from kqueue.transport.topic_reader import read_record
from kqueue.worker.work import Failure, WorkItem

log = logging.getLogger("kqueue.worker")
ParkedReader = Callable[[TP, int], "Record | None"]  # the record at an offset, None when gone
READ_AGAIN_AFTER = 2.0  # seconds before reading a parked task again when Kafka did not answer


class HeldLanes(Protocol):
    def take_held(self, lane: Hashable) -> list[WorkItem]: ...

    def unhold(self, lane: Hashable) -> None: ...


def ordered_queues(app: App) -> frozenset[str]:
    """Queues with an ordered task type: their keys may be blocked."""
    return frozenset(queue for (queue, _), task in app.tasks.items() if task.ordered)


def first_origin(item: WorkItem) -> str:
    """Where the task was first delivered: a retry's and a copy's kq-origin, else its own position."""
    return item.headers.get(names.H_ORIGIN) or item.origin


class _Read:
    """Reading one parked task on a thread; the blocker it releases waits (unsettled) meanwhile."""

    def __init__(self, reader: ParkedReader, item: WorkItem, records: list[OutRecord], tp: TP, offset: int) -> None:
        self.item, self.records, self.tp, self.offset = item, records, tp, offset
        self.record: Record | None = None
        self.error: BaseException | None = None
        self.not_before = 0.0
        self._reader = reader
        self.done = threading.Event()

    def start(self, delay: float = 0.0) -> None:
        self.done.clear()
        self.error = None
        self.not_before = time.monotonic() + delay
        threading.Thread(target=self._run, name="kqueue-unpark", daemon=True).start()

    def _run(self) -> None:
        try:
            wait = self.not_before - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            self.record = self._reader(self.tp, self.offset)
        except Exception as exc:  # any failure to read is tried again
            self.error = exc
        finally:
            self.done.set()


class OrderedKeys:
    def __init__(self, app: App, lanes: HeldLanes, reader: ParkedReader | None) -> None:
        self._prefix = app.topic_prefix
        self._queues = ordered_queues(app)
        self._lanes = lanes
        self._reader = reader
        self._reads: list[_Read] = []

    @staticmethod
    def wanted(app: App, queues: list[str]) -> bool:
        return not ordered_queues(app).isdisjoint(queues)

    @classmethod
    def of(cls, app: App, lanes: HeldLanes, kafka: bool) -> OrderedKeys:
        """With `kafka` False (a scripted transport), parked tasks cannot be read back."""
        return cls(app, lanes, partial(read_record, app.bootstrap_servers) if kafka else None)

    def covers(self, item: WorkItem) -> bool:
        """A keyed task of a queue with ordered task types: its key may be blocked."""
        return item.key is not None and item.queue in self._queues

    @property
    def reading(self) -> int:
        return len(self._reads)

    # -- on a runner thread ---------------------------------------------------------------------------
    @staticmethod
    def holds_after(item: WorkItem, failure: Failure) -> bool:
        """Whether this failure stops its key's later items from starting until the poll loop has
        decided: an ordered task that will be retried, or a blocker that follows to the DLQ."""
        task = item.task
        if task is None or not task.ordered or item.key is None or failure.cancelled:
            return False
        max_attempts = item.meta.max_attempts or task.max_attempts
        if failure.retryable and retries(item.meta.attempt, max_attempts, failure.reject):
            return True
        return task.ordered == "follow" and item.blocks_key

    # -- on the poll thread -----------------------------------------------------------------------------
    def admit(self, item: WorkItem, book: ClaimBook) -> Admit:
        block = book.blocks.get((item.topic, item.key))  # type: ignore[arg-type]
        verdict = admit(block, first_origin(item))
        if block is not None and verdict is Admit.RUN and first_origin(item) == block.blocker:
            block.admitted = True
            item.blocks_key = True
        return verdict

    def park(self, item: WorkItem, book: ClaimBook) -> list[OutRecord]:
        """A blocked key's later task: its park entry (settles it; it runs later as a copy), and a
        `parked` event, so the status view does not take the commit passing it for a completion."""
        assert item.key is not None
        book.blocks[(item.topic, item.key)].park(item.offset)
        task_type = item.task.name if item.task is not None else item.meta.task_type or ""
        event = TaskEvent(item.task_id, item.queue, task_type, "parked", item.meta.attempt, now_ms(),
                          "waiting for an earlier task of its key to be retried (ordered retries)")
        return [self._dedup(item, park_key(item.topic, item.key, item.offset), PARK_VALUE, RecordKind.PARK),
                status_record(event, self._prefix)]

    def retrying(self, item: WorkItem, book: ClaimBook, records: list[OutRecord]) -> list[OutRecord]:
        """An ordered task goes to a retry: its key is blocked by it (written with the retry)."""
        assert item.key is not None
        bid = (item.topic, item.key)
        origin = first_origin(item)
        block = book.blocks.get(bid)
        if block is None:
            block = book.blocks[bid] = KeyBlock(origin)
        elif block.blocker != origin:
            # Not the key's blocker (cannot happen: nothing of a blocked key runs but the blocker
            # and what queued behind it): its retry is parked when it comes back, still in order.
            log.warning("ordered task %s of a blocked key failed; its retry waits its turn", item.task_id)
            return records
        block.admitted = False
        return [*records, self._block_record(item, block)]

    def held_behind(self, item: WorkItem) -> list[WorkItem]:
        """The items its key queued in the executor while it failed (to park or dead-letter)."""
        if not item.held_lane:
            return []
        item.held_lane = False
        return self._lanes.take_held(item.lane)

    def unhold(self, item: WorkItem) -> None:
        if item.held_lane:
            item.held_lane = False
            self._lanes.unhold(item.lane)

    def finishing(self, item: WorkItem, book: ClaimBook, records: list[OutRecord],
                  dead_lettered: bool) -> list[OutRecord] | None:
        """A task's final settlement: when it is its key's blocker, the records that release the next
        parked task or end the block; None when that task is being read (`ready` hands it back)."""
        assert item.key is not None
        bid = (item.topic, item.key)
        block = book.blocks.get(bid)
        if block is None or block.blocker != first_origin(item):
            return records
        if dead_lettered and item.task is not None and item.task.ordered == "follow":
            block.follow = True
        return self._release(item, book, block, records)

    def _release(self, item: WorkItem, book: ClaimBook, block: KeyBlock,
                 records: list[OutRecord]) -> list[OutRecord] | None:
        assert item.key is not None
        if not block.parked:
            del book.blocks[(item.topic, item.key)]
            return [*records, self._dedup(item, block_key(item.topic, item.key), None)]
        if self._reader is None:
            raise RuntimeError("ordered retries need Kafka to read parked tasks back")
        read = _Read(self._reader, item, records, (item.topic, item.partition), block.parked[0])
        self._reads.append(read)
        read.start()
        return None

    def ready(self, book_of: Callable[[WorkItem], ClaimBook | None]) -> list[tuple[WorkItem, list[OutRecord]]]:
        """Blockers whose next parked task has been read: each with everything its settlement writes."""
        out: list[tuple[WorkItem, list[OutRecord]]] = []
        for read in [r for r in self._reads if r.done.is_set()]:
            self._reads.remove(read)
            item = read.item
            book = book_of(item)
            if book is None or not book.live or item.owner is None or not item.owner.live:
                continue  # the ownership ended: the next owner releases it again
            assert item.key is not None
            block = book.blocks.get((item.topic, item.key))
            if block is None or not block.parked or block.parked[0] != read.offset:
                out.append((item, read.records))  # nothing else changes a block while its blocker waits
                continue
            if read.error is not None:
                log.warning("cannot read parked task %s/%d at %d (%s): trying again in %.0fs", item.topic,
                            item.partition, read.offset, read.error, READ_AGAIN_AFTER)
                self._reads.append(read)
                read.start(READ_AGAIN_AFTER)
                continue
            head = block.parked.pop(0)
            gone = self._dedup(item, park_key(item.topic, item.key, head), None)
            if read.record is None:
                log.error("parked task at %s/%d/%d is gone from the topic (its retention passed): skipped",
                          item.topic, item.partition, head)
                again = self._release(item, book, block, [*read.records, gone])
                if again is not None:
                    out.append((item, again))
                continue
            block.blocker = f"{item.topic}/{item.partition}/{head}"
            block.admitted = False
            copy = self._copy(item, read.record, block.blocker)
            out.append((item, [*read.records, copy, gone, self._block_record(item, block)]))
        return out

    # -- records -----------------------------------------------------------------------------------------
    def _copy(self, item: WorkItem, record: Record, origin: str) -> OutRecord:
        """The parked task, again at the end of its lane; kq-origin names where it was parked."""
        raw = record.headers() or []
        pairs = raw.items() if isinstance(raw, dict) else raw
        headers: HeaderList = [(k, v if isinstance(v, bytes) else (v or "").encode())
                               for k, v in pairs if k != names.H_ORIGIN]
        headers.append((names.H_ORIGIN, origin.encode()))
        return OutRecord(RecordKind.UNPARK, item.topic, record.value(), record.key(), headers, item.partition)

    def _block_record(self, item: WorkItem, block: KeyBlock) -> OutRecord:
        assert item.key is not None
        return self._dedup(item, block_key(item.topic, item.key), encode_block(block))

    def _dedup(self, item: WorkItem, key: str, value: bytes | None, kind: RecordKind = RecordKind.CLAIM) -> OutRecord:
        return dedup_record(item.queue, item.partition, key, value, self._prefix, kind)
