"""Pause and resume a queue: the command written to `_kqueue.control` (key = the queue), and the
paused queues read back from it.

The newest record of a queue is its state, so compaction keeps exactly what matters. A pause of a
queue paused already keeps its `since` (and its reason, unless a new one is given): the state is
read from the topic first. Workers stop starting the queue's tasks within a second or two, and a
worker that starts later reads the pause before its first task (worker/pausing.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from kqueue.core import names
from kqueue.core.control import ControlCommand, Paused, QueuePauses, pause_after, pause_command
from kqueue.core.errors import DeliveryError
from kqueue.core.topology import system_topic_specs
from kqueue.transport.admin import (
    KafkaUnavailable,
    broker_count,
    ensure_topics,
    existing_topics,
    make_admin,
    unreachable,
)
from kqueue.transport.topic_reader import TopicReader, TopicReadError, read_to_end

if TYPE_CHECKING:
    from kqueue.sdk.app import App


@dataclass(frozen=True)
class QueuePause:
    """A queue's pause state: `paused` is None while it runs."""

    queue: str
    paused: Paused | None

    def as_json(self) -> dict[str, Any]:
        """{"queue", "paused": bool, "since": epoch ms or None, "reason": text or None}."""
        paused = self.paused
        return {"queue": self.queue, "paused": paused is not None,
                "since": paused.since if paused is not None else None,
                "reason": paused.reason if paused is not None else None}

    def __str__(self) -> str:
        paused = self.paused
        if paused is None:
            return f"queue {self.queue} is running (not paused)"
        why = f": {paused.reason}" if paused.reason else ""
        return f"queue {self.queue} is paused since {since_text(paused.since)}{why}"


def since_text(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def paused_json(paused: Paused | None) -> dict[str, Any] | None:
    """How queue figures show it: {"since": epoch ms, "reason": text or None}, or None."""
    return None if paused is None else {"since": paused.since, "reason": paused.reason}


def read_pauses(bootstrap: str, prefix: str = "", timeout: float = 10.0) -> dict[str, Paused]:
    """The paused queues now: `_kqueue.control` read to its end (TopicReadError if it cannot be)."""
    return read_controls(bootstrap, prefix, timeout).snapshot()


def read_controls(bootstrap: str, prefix: str = "", timeout: float = 10.0) -> QueuePauses:
    """The queues' pauses (and, in `.limits`, their rate limits) now: `_kqueue.control` read to its
    end (TopicReadError if it cannot be)."""
    topic = names.control_topic(prefix)
    lister = TopicReader(bootstrap, "pauses")
    try:
        partitions = lister.topic_partitions([topic], timeout)
    finally:
        lister.close()
    pauses = QueuePauses()
    for msg in read_to_end(bootstrap, partitions, "pauses", stalled_after=timeout):
        key, value = msg.key(), msg.value()
        if key is None:
            continue
        try:
            command = None if value is None else ControlCommand.decode(value)
        except Exception:  # a record this version cannot read says nothing about pauses it knows
            continue
        if command is None or command.command != "cancel":
            pauses.apply(key.decode("utf-8", "replace"), command)
    return pauses


def read_state(app: App, queue: str, created: bool) -> QueuePauses:
    """The queues' pauses and limits before a command for `queue` is written. A control topic created
    a moment ago (here, or by `ensure_queue`) may have no leader yet: asked again until it has, within
    the app's timeout. DeliveryError if it cannot be read."""
    if created:
        return QueuePauses()
    deadline = time.monotonic() + app.enqueue_timeout
    while True:
        try:
            return read_controls(app.bootstrap_servers, app.topic_prefix, app.enqueue_timeout)
        except TopicReadError as exc:
            if time.monotonic() >= deadline or "LEADER" not in str(exc):
                raise DeliveryError(f"cannot read the state of queue {queue!r}: {exc}") from None
            time.sleep(0.2)


def check_queue(app: App, queue: str, doing: str) -> bool:
    """Before a command for `queue` is written: ValueError for a queue that is neither one of the
    app's nor on the cluster; the control topic is created if missing (DeliveryError when Kafka
    cannot be reached). True if it was created now: empty, so there is no state to read (and its
    partitions may have no leader yet to ask)."""
    timeout = app.enqueue_timeout
    admin = make_admin(app.bootstrap_servers)
    try:
        topics = existing_topics(admin, timeout)
        if queue not in app.queues() and names.main_topic(queue, app.topic_prefix) not in topics:
            raise ValueError(f"no queue {queue!r}: neither a queue of this app nor a topic "
                             f"{names.main_topic(queue, app.topic_prefix)!r} on the cluster")
        if names.control_topic(app.topic_prefix) not in topics:
            specs = system_topic_specs(broker_count(admin, timeout), app.topic_prefix, replication=app.replication)
            ensure_topics(admin, specs, timeout)
            return True
    except KafkaUnavailable as exc:
        raise DeliveryError(unreachable(app.bootstrap_servers, timeout, exc, doing)) from None
    return False


def change_pause(app: App, queue: str, pause: bool, reason: str | None = None) -> QueuePause:
    """Write the pause (or resume) of `queue` and wait for Kafka to have it; the state it leaves.

    ValueError for a queue that is neither one of the app's nor on the cluster; DeliveryError when
    Kafka cannot be reached, its state cannot be read, or the record is refused."""
    timeout = app.enqueue_timeout
    created = check_queue(app, queue, f"to {'pause' if pause else 'resume'} queue {queue!r}")
    current = read_state(app, queue, created).get(queue)
    now = int(time.time() * 1000)
    command = pause_command(queue, current, reason, now) if pause else ControlCommand("resume", queue, now)
    app.producer.produce(names.control_topic(app.topic_prefix), command.encode(), queue.encode(), [])
    app.flush(timeout)
    return QueuePause(queue, pause_after(current, command))
