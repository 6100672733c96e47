"""A paused queue in the worker: its lanes stop, and none of its tasks starts until the resume.

The paused queues come from `_kqueue.control` (the control watch folds them into `QueuePauses`);
the poll loop looks at them when their version moves. Pausing a queue:
- its lanes' partitions get `PAUSED` (their delay tiers do not: due records still move to the
  lanes and wait there), and a record fetched before the pause took hold is cut (fetched again
  from there on resume);
- its tasks queued in the executor are taken out and parked on their owner; a task a runner had
  already taken is handed back by the runner before it starts (`PausedWork.hold_back`) and parked
  too. Parked tasks stay tracked, so no commit passes them: a restart meanwhile redelivers them
  to a worker that reads the pause before it starts anything;
- on resume, the parked tasks go back to the executor in offset order, and the lanes fetch again.
A key's order holds: after a runner hands a task back, no later task of its lane starts until that
one has started again (a resume can come while a runner is still in the middle of a key's run).
"""

from __future__ import annotations

import bisect
import logging
from collections import deque
from collections.abc import Hashable, Iterable

from kqueue.core.control import QueuePauses
from kqueue.worker.executor import Executor
from kqueue.worker.partition_table import PartitionTable
from kqueue.worker.partitions import PartitionOwner, PauseReason
from kqueue.worker.work import WorkItem

log = logging.getLogger("kqueue.worker")


class PausedWork:
    """One partition's tasks held back by a pause (lives on its owner once its queue was paused)."""

    __slots__ = ("diverted", "parked", "returned", "stopped")

    def __init__(self, returned: deque[WorkItem]) -> None:
        self.stopped = False  # its queue is paused now: no task of it starts
        self.parked: list[WorkItem] = []  # tracked, not started: back to the executor on resume
        # Lane -> offsets of its tasks handed back and not started since (sorted). Written by runners,
        # one at a time per lane (a lane's runs never overlap).
        self.diverted: dict[Hashable, list[int]] = {}
        self.returned = returned  # where runners hand tasks back to the poll loop (any thread appends)

    def hold_back(self, item: WorkItem) -> bool:
        """Asked by a runner just before it starts `item`: True if it must not start now (it is then
        handed back to the poll loop): while its queue is paused, and while an earlier task of its
        lane waits to start again."""
        if not self.stopped and not self.diverted:
            return False
        owner = item.owner
        if owner is None or not owner.live:
            return False  # the executor skips tasks of an ended ownership itself
        lane = item.lane
        waiting = self.diverted.get(lane)
        if waiting is not None and not self.stopped and item.offset <= waiting[0]:
            if item.offset == waiting[0]:  # the first of its lane handed back: it starts again now
                waiting.pop(0)
                if not waiting:
                    del self.diverted[lane]
            return False
        if waiting is None:
            if not self.stopped:
                return False
            waiting = self.diverted[lane] = []
        if item.offset not in waiting:
            bisect.insort(waiting, item.offset)
        self.returned.append(item)
        return True

    def unpark(self) -> list[WorkItem]:
        """The parked tasks in offset order (a key's in its order), to hand out again."""
        parked, self.parked = self.parked, []
        parked.sort(key=lambda item: item.offset)
        return parked


class QueuePausing:
    """The poll loop's side of pause: applies the paused queues to the partition owners, parks what
    runners hand back, and hands everything out again on resume."""

    def __init__(self, table: PartitionTable, executor: Executor, pauses: QueuePauses, queues: Iterable[str]) -> None:
        self._table = table
        self._executor = executor
        self._pauses = pauses
        self._queues = frozenset(queues)
        self._seen = -1  # the version of `pauses` applied
        self.paused: frozenset[str] = frozenset()  # this worker's queues that are paused
        self.returned: deque[WorkItem] = deque()

    def changed(self) -> bool:
        return self._pauses.version != self._seen

    def apply(self) -> None:
        """Bring the owners in line with the paused queues as read now."""
        self._seen = self._pauses.version
        state = self._pauses.snapshot()
        wanted = frozenset(q for q in self._queues if q in state)
        if wanted == self.paused:
            return
        newly, lifted = wanted - self.paused, self.paused - wanted
        self.paused = wanted
        for queue in sorted(newly):
            reason = state[queue].reason
            log.info("queue %s paused%s: starting none of its tasks until it is resumed", queue,
                     f" ({reason})" if reason else "")
        for queue in sorted(lifted):
            log.info("queue %s resumed", queue)
        resumed: list[PartitionOwner] = []
        stopped = False
        for owner in self._table.states.values():
            if owner.is_tier:
                continue
            if owner.queue in newly:
                self._stop(owner)
                stopped = True
            elif owner.queue in lifted:
                resumed.append(owner)
        if stopped:
            self._park_queued()
        if resumed:
            self._resume(resumed)

    def assigned(self, owners: Iterable[PartitionOwner]) -> None:
        """New partitions of a paused queue start paused."""
        for owner in owners:
            if not owner.is_tier and owner.queue in self.paused:
                self._stop(owner)

    def take_back(self) -> None:
        """Tasks runners handed back: parked while their queue is paused, else handed out again (a
        later task of a key that waited for an earlier one)."""
        returned = self.returned
        again: list[WorkItem] = []
        while returned:
            item = returned.popleft()
            owner = item.owner
            work = owner.paused_work if owner is not None and owner.live else None
            if work is None:
                continue  # its ownership ended: redelivered to the next owner
            if work.stopped:
                work.parked.append(item)
            else:
                again.append(item)
        if again:
            self._executor.submit(again)

    def _stop(self, owner: PartitionOwner) -> None:
        work = owner.paused_work
        if work is None:
            work = owner.paused_work = PausedWork(self.returned)
        work.stopped = True
        owner.pause(PauseReason.PAUSED)

    def _park_queued(self) -> None:
        """Take the paused queues' tasks out of the executor's queues (not started yet) and park them."""
        dropped: dict[int, WorkItem] = {}  # by identity: the executor may ask about an item twice

        def doomed(item: WorkItem) -> bool:
            work = item.owner.paused_work if item.owner is not None else None
            if work is None or not work.stopped:
                return False
            dropped[id(item)] = item
            return True

        self._executor.drop(doomed)
        for item in dropped.values():
            work = item.owner.paused_work if item.owner is not None else None
            if work is not None:
                work.parked.append(item)

    def _resume(self, owners: list[PartitionOwner]) -> None:
        items: list[WorkItem] = []
        for owner in owners:
            work = owner.paused_work
            if work is None:
                continue
            work.stopped = False
            owner.unpause(PauseReason.PAUSED)
            items += work.unpark()
        if items:
            self._executor.submit(items)
