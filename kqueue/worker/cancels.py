"""The cancels and pauses a worker must honour: `_kqueue.control` read whole, outside any group, on a thread.

A cancel command stays in the compacted topic until the task it names is settled as cancelled
(that settlement writes a tombstone for it), so a worker that starts later, or restarts, still
sees every pending cancel. The worker starts no task before this has read up to the end the topic
had when it started (`wait_caught_up`): otherwise a restart could run a task cancelled meanwhile.

A cancel reaches only the life of the task it was issued for, and expires (core/control.py): a
cancel past its expiry is dropped from `pending` and tombstoned here, so one for an id that never
came (or had finished) does not wait in the topic for the next task to reuse that id.

Pause and resume records (key = the queue) fold into `pauses` (core/control.QueuePauses), which the
poll loop applies (worker/pausing.py); the wait before the first task covers them too, so a worker
that starts while its queue is paused runs none of it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from kqueue.core.control import (
    DEFAULT_CANCEL_EXPIRY,
    ControlCommand,
    PendingCancels,
    QueuePauses,
    cancel_expiry_seconds,
)
from kqueue.core.headers import now_ms
from kqueue.transport.producer import TaskProducer
from kqueue.transport.topic_reader import TopicReader

log = logging.getLogger("kqueue.worker")
CATCH_UP_TIMEOUT = 30.0


def _expiry_from_env() -> float:
    try:
        return cancel_expiry_seconds()
    except ValueError as exc:
        log.warning("%s; cancels expire after the default %.0f days", exc, DEFAULT_CANCEL_EXPIRY / 86400)
        return DEFAULT_CANCEL_EXPIRY


class CancelWatch:
    def __init__(self, bootstrap: str, topic: str, expiry: float | None = None,
                 clock: Callable[[], int] = now_ms, pauses: QueuePauses | None = None) -> None:
        """expiry: seconds a cancel is kept (None: KQUEUE_CANCEL_EXPIRY, default 7 days)."""
        # Task ids with a cancel not yet settled, each with its issue time (read from any thread).
        self.pending = PendingCancels()
        self.pauses = pauses if pauses is not None else QueuePauses()  # the paused queues
        self._bootstrap = bootstrap
        self._topic = topic
        self._expiry_ms = int((expiry if expiry is not None else _expiry_from_env()) * 1000)
        self._clock = clock
        self._expired_unread: list[str] = []  # read already expired: tombstoned after the batch
        self._stop = threading.Event()
        self._caught_up = threading.Event()
        self._waited = False
        self._thread = threading.Thread(target=self._run, name="kqueue-cancels", daemon=True)

    def start(self) -> CancelWatch:
        self._thread.start()
        return self

    def wait_caught_up(self, timeout: float = CATCH_UP_TIMEOUT) -> bool:
        return self._caught_up.wait(timeout)

    def wait_until_read(self) -> None:
        """Before the first task: wait (once) until the topic has been read to its end; it was being
        read while the group formed, so this rarely waits at all."""
        if self._waited:
            return
        self._waited = True
        if not self.wait_caught_up():
            log.warning("the cancels in %s were not all read in %.0fs: starting anyway", self._topic,
                        CATCH_UP_TIMEOUT)

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        reader = TopicReader(self._bootstrap, "cancels", log_level=3)
        try:
            partitions = reader.partitions(self._topic)
            if not partitions:
                self._caught_up.set()  # no control topic yet: nothing was ever cancelled
                return
            reader.assign({(self._topic, p): None for p in partitions})
            behind = set(partitions)
            while not self._stop.is_set():
                records, ends = reader.poll(500, 0.1)  # waits this long: a pause or cancel is heard within it
                for msg in records:
                    self._apply(msg.key(), msg.value())
                for (_, partition), _ in ends:
                    behind.discard(partition)
                    if not behind and not self._caught_up.is_set():
                        self.expire()  # none of the first tasks meets an expired cancel
                        self._caught_up.set()
                self.expire()
        except Exception:  # never the worker's death: it goes on without cancels, and says so
            log.exception("reading cancels and pauses from %s failed; neither is honoured until restart", self._topic)
            self._caught_up.set()
        finally:
            reader.close()

    def expire(self) -> list[str]:
        """Drop the cancels past their expiry and tombstone them (cheap when none is due)."""
        gone = self.pending.expire(self._clock())
        if self._expired_unread:
            gone, self._expired_unread = [*self._expired_unread, *gone], []
        if gone:
            log.info("%d cancel(s) expired unused (kept %.0fs): %s", len(gone), self._expiry_ms / 1000,
                     ", ".join(gone[:5]) + (" ..." if len(gone) > 5 else ""))
            self._tombstone(gone)
        return gone

    def _tombstone(self, task_ids: list[str]) -> None:
        """Every worker that sees a cancel expire writes its tombstone: the same one, harmlessly. A
        producer just for them, closed after (expiries are rare; a client kept open costs threads)."""
        try:
            producer = TaskProducer(self._bootstrap, bound=5.0)
            for task_id in task_ids:
                producer.produce(self._topic, None, task_id.encode())
            producer.flush(5.0)
        except Exception as exc:  # never the watch's death: the next worker to start expires them again
            log.warning("could not tombstone expired cancels in %s: %s", self._topic, exc)

    def _apply(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        task_id = key.decode("utf-8", "replace")
        if value is None:  # tombstone: the cancel was carried out, or expired
            self.pending.retire(task_id)
            self.pauses.apply(task_id, None)  # (a queue's: it is no longer paused)
            return
        try:
            command = ControlCommand.decode(value)
        except Exception:
            log.warning("skipping an unreadable record in %s (key %s)", self._topic, task_id)
            return
        if command.command != "cancel":
            self.pauses.apply(task_id, command)  # pause or resume: the key is the queue
            return
        if command.expires_at(self._expiry_ms) <= self._clock():  # expired before we read it
            self.pending.retire(command.target)  # it replaces an older cancel of the id, as compaction would
            self._expired_unread.append(task_id)
        else:
            self.pending.add_cancel(command, self._expiry_ms)
