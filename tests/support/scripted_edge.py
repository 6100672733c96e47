"""A scripted stand-in for kqueue's own consumer edge and settler, for unit tests of the worker's
state machine: partitions are in-memory lists, and rebalances, lost partitions and refused commits
happen when a test says so. (Integration tests use a real broker; this never stands in for one.)"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from kqueue.core.records import TP, OutRecord
from kqueue.sdk.app import App
from kqueue.transport.consumer import ConsumerEdge, RebalanceListener, Record
from kqueue.transport.settle import Settler
from kqueue.worker.loop import WorkerOptions

LOG_APPEND_TIME = 2  # confluent_kafka.TIMESTAMP_LOG_APPEND_TIME


@dataclass(frozen=True)
class ScriptedRecord:
    _topic: str
    _partition: int
    _offset: int
    _key: bytes | None
    _value: bytes | None
    _headers: list[tuple[str, bytes]]
    _timestamp_ms: int

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def headers(self) -> list[tuple[str, bytes]]:
        return self._headers

    def timestamp(self) -> tuple[int, int]:
        return (LOG_APPEND_TIME, self._timestamp_ms)


@dataclass
class ScriptedEdge:
    logs: dict[TP, list[ScriptedRecord]] = field(default_factory=dict)
    positions: dict[TP, int] = field(default_factory=dict)
    committed: dict[TP, int] = field(default_factory=dict)
    notes: dict[TP, str] = field(default_factory=dict)  # commit metadata per partition
    assigned: set[TP] = field(default_factory=set)
    paused: set[TP] = field(default_factory=set)
    calls: list[tuple[str, Any]] = field(default_factory=list)  # pause / resume / seek, in order
    topics: list[str] = field(default_factory=list)
    closed: bool = False

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._events: deque[tuple[str, list[TP]]] = deque()
        self._listener: RebalanceListener | None = None

    # -- the test's side ---------------------------------------------------------------------------
    def append(self, topic: str, partition: int, value: bytes, key: bytes | None = None,
               headers: list[tuple[str, bytes]] | None = None, timestamp_ms: int | None = None) -> int:
        with self._lock:
            log = self.logs.setdefault((topic, partition), [])
            log.append(ScriptedRecord(topic, partition, len(log), key, value, headers or [],
                                      timestamp_ms if timestamp_ms is not None else int(time.time() * 1000)))
            return len(log) - 1

    def assign(self, *tps: TP) -> None:
        """The group hands these out at the next poll."""
        self._events.append(("assign", list(tps)))

    def revoke(self, *tps: TP) -> None:
        self._events.append(("revoke", list(tps)))

    def lose(self, *tps: TP) -> None:
        self._events.append(("lose", list(tps)))

    def pending_events(self) -> int:
        return len(self._events)

    # -- ConsumerEdge ------------------------------------------------------------------------------
    def subscribe(self, topics: list[str], listener: RebalanceListener) -> None:
        self.topics = list(topics)
        self._listener = listener

    def poll_batch(self, max_records: int, timeout: float) -> list[Record]:
        assert self._listener is not None
        while self._events:
            kind, tps = self._events.popleft()
            if kind == "assign":
                for tp in tps:
                    self.positions[tp] = self.committed.get(tp, 0)
                    self.paused.discard(tp)  # as the real edge resumes what it assigns
                self.assigned |= set(tps)
                self._listener.on_assign(tps)
            elif kind == "revoke":
                self._listener.on_revoke(tps)
                self.assigned -= set(tps)
            else:
                self._listener.on_lost(tps)
                self.assigned -= set(tps)
        out: list[Record] = []
        with self._lock:
            for tp in sorted(self.assigned - self.paused):
                log = self.logs.get(tp, [])
                start = self.positions.get(tp, 0)
                taken = log[start:start + max_records - len(out)]
                out.extend(taken)
                self.positions[tp] = start + len(taken)
        if not out:
            time.sleep(min(timeout, 0.002))
        return out

    def pause(self, partitions: Iterable[TP]) -> None:
        tps = list(partitions)
        self.calls.append(("pause", tps))
        self.paused |= set(tps)

    def resume(self, partitions: Iterable[TP]) -> None:
        tps = list(partitions)
        self.calls.append(("resume", tps))
        self.paused -= set(tps)

    def member_id(self) -> str:
        return "scripted-member" if self._listener is not None else ""

    def seek(self, partition: TP, offset: int) -> None:
        self.calls.append(("seek", (partition, offset)))
        self.positions[partition] = offset

    def commit(self, offsets: dict[TP, int], metadata: dict[TP, str] | None = None) -> None:
        self.committed.update(offsets)
        self.notes.update(metadata or {})

    def committed_offsets(self, partitions: list[TP]) -> dict[TP, tuple[int, str | None]]:
        return {tp: (self.committed[tp], self.notes.get(tp)) for tp in partitions if tp in self.committed}

    def cached_lag(self, partitions: list[TP]) -> dict[TP, int]:
        with self._lock:
            return {tp: len(self.logs.get(tp, [])) - self.positions.get(tp, 0) for tp in partitions
                    if tp in self.assigned}

    def group_metadata(self) -> Any:
        return "scripted-group"

    def close(self) -> None:
        # Leaving the group revokes everything, as librdkafka's close does.
        if self._listener is not None and self.assigned:
            self._listener.on_revoke(sorted(self.assigned))
        self.assigned.clear()
        self.closed = True


@dataclass
class ScriptedSettler:
    """A transactional settler over the scripted edge: a commit makes records and offsets durable
    together, or (when scripted to fail) neither."""

    edge: ScriptedEdge
    transactional: bool = True
    written: list[OutRecord] = field(default_factory=list)
    commits: list[tuple[list[OutRecord], dict[TP, int]]] = field(default_factory=list)
    failures: deque[BaseException] = field(default_factory=deque)
    closed: bool = False

    def fail_next(self, *errors: BaseException) -> None:
        self.failures.extend(errors)

    def commit(self, records: list[OutRecord], offsets: dict[TP, int], group_metadata: Any,
               metadata: dict[TP, str] | None = None) -> None:
        assert group_metadata == "scripted-group"
        if self.failures:
            raise self.failures.popleft()
        self.written.extend(records)
        self.edge.committed.update(offsets)
        self.edge.notes.update(metadata or {})
        self.commits.append((list(records), dict(offsets)))

    abandonable: bool = False  # whether a stuck commit may be given up (the Kafka settler: before it is sent)
    abandoned: int = 0

    def abandon(self) -> bool:
        if self.abandonable:
            self.abandoned += 1
        return self.abandonable

    def close(self) -> None:
        self.closed = True

    def topics_written(self) -> list[str]:
        return [r.topic for r in self.written]


def scripted_transport(edge: ScriptedEdge, settler: ScriptedSettler) -> Any:
    def transport(app: App, options: WorkerOptions, queues: list[str]) -> tuple[ConsumerEdge, Settler]:
        return edge, settler

    return transport
