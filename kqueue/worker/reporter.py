"""Worker reports to `_kqueue.workers`: which tasks run here, about once a second.

The status view reads them to answer `processing` (and with which worker, since when) without a
write per task; the dashboard shows them as the workers table. A plain idempotent producer of its
own: the worker's transactional one can write only inside a batch's transaction.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from kqueue.core.errors import DeliveryError
from kqueue.core.reports import RunningTask, WorkerReport
from kqueue.sdk.middleware import TickEvent
from kqueue.transport.producer import TaskProducer
from kqueue.worker.work import WorkItem

log = logging.getLogger("kqueue.worker")
RUNNING_LISTED = 500  # tasks named per report at most (a report stays one small record)


def build_report(tick: TickEvent, running: Iterable[WorkItem], now_ms: int) -> WorkerReport:
    tasks: list[RunningTask] = []
    for item in running:
        if len(tasks) >= RUNNING_LISTED:
            break
        task_type = item.task.name if item.task is not None else item.meta.task_type or ""
        attempt = min(item.meta.attempt, 2**31 - 1)  # an Avro int, whatever a foreign header says
        tasks.append(RunningTask(item.task_id, item.queue, task_type, attempt,
                                 int(item.started_at * 1000) if item.started_at else now_ms))
    return WorkerReport(tick.worker_id, tick.group, tick.member_id, now_ms, tick.concurrency, tick.busy,
                        tuple(f"{t}/{p}" for t, p in tick.partitions), tuple(tasks), tick.stopping)


class ReportSender:
    def __init__(self, bootstrap: str, topic: str) -> None:
        self._topic = topic
        # bound=0: a full send buffer (Kafka away) drops a report rather than waiting for room.
        self._producer = TaskProducer(bootstrap, bound=0, **{"linger.ms": 20})

    def send(self, tick: TickEvent, running: dict[int, WorkItem] | None) -> None:
        items = list(running.copy().values()) if running else []  # dict.copy holds the GIL: a safe snapshot
        try:
            report = build_report(tick, items, int(time.time() * 1000))
            self._producer.produce(self._topic, report.encode(), tick.worker_id.encode())
        except Exception as exc:  # a lost report only makes the view a second staler; never the worker's end
            log.debug("worker report not sent: %s", exc)
        self._producer.poll(0)

    def close(self, last: TickEvent) -> None:
        """The last report: nothing runs here any more."""
        self.send(last, None)
        try:
            self._producer.flush(5.0)
        except DeliveryError as exc:
            log.debug("the last worker report was not delivered: %s", exc)
