"""The cancels a worker must honour: `_kqueue.control` read whole, outside any group, on a thread.

A cancel command stays in the compacted topic until the task it names is settled as cancelled
(that settlement writes a tombstone for it), so a worker that starts later, or restarts, still
sees every pending cancel. The worker starts no task before this has read up to the end the topic
had when it started (`wait_caught_up`): otherwise a restart could run a task cancelled meanwhile.
"""

from __future__ import annotations

import logging
import threading
import uuid

from confluent_kafka import Consumer, KafkaError, TopicPartition

from kqueue.core.control import ControlCommand
from kqueue.transport.config import client_config

log = logging.getLogger("kqueue.worker")
CATCH_UP_TIMEOUT = 30.0


class CancelWatch:
    def __init__(self, bootstrap: str, topic: str) -> None:
        self.pending: set[str] = set()  # task ids with a cancel not yet settled (read from any thread)
        self._bootstrap = bootstrap
        self._topic = topic
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
        consumer = Consumer({**client_config(self._bootstrap), "group.id": f"_kqueue.cancels.{uuid.uuid4().hex[:8]}",
                             "enable.auto.commit": False, "isolation.level": "read_committed",
                             "enable.partition.eof": True, "log_level": 3})
        try:
            meta = consumer.list_topics(self._topic, timeout=10)
            partitions = list(meta.topics[self._topic].partitions) if self._topic in meta.topics else []
            if not partitions:
                self._caught_up.set()  # no control topic yet: nothing was ever cancelled
                return
            consumer.assign([TopicPartition(self._topic, p, 0) for p in partitions])
            behind = set(partitions)
            while not self._stop.is_set():
                for msg in consumer.consume(500, timeout=0.5):
                    error = msg.error()
                    if error is not None:
                        if error.code() == KafkaError._PARTITION_EOF:
                            behind.discard(msg.partition())
                            if not behind:
                                self._caught_up.set()
                        continue
                    self._apply(msg.key(), msg.value())
        except Exception:  # never the worker's death: it goes on without cancels, and says so
            log.exception("reading cancels from %s failed; cancels are not honoured until restart", self._topic)
            self._caught_up.set()
        finally:
            consumer.close()

    def _apply(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        task_id = key.decode("utf-8", "replace")
        if value is None:  # tombstone: the cancel was carried out
            self.pending.discard(task_id)
            return
        try:
            command = ControlCommand.decode(value)
        except Exception:
            log.warning("skipping an unreadable record in %s (key %s)", self._topic, task_id)
            return
        if command.command == "cancel":
            self.pending.add(command.target)
