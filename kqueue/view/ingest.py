"""The status view's ingest: reads kqueue's topics (task headers only) into the store.

It reads, outside any consumer group and with read_committed, every queue's lanes and delay tiers,
`_kqueue.status`, `_kqueue.control` and `_kqueue.workers`, and about three times a second the
committed offsets of the groups consuming the lanes (those with members, see
`reading.counted_groups`, or the ones named with `--group`), which it publishes once it has read every
outcome partition up to where it ended when the offsets were taken (see `reading.PendingFence`).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from kqueue.core import names
from kqueue.core.control import ControlCommand, pause_after
from kqueue.core.headers import header_map
from kqueue.core.queue_limits import limit_after, queue_of_limit_key
from kqueue.core.reports import WorkerReport
from kqueue.core.status import TaskEvent
from kqueue.core.topology import queue_topics, worker_topics
from kqueue.transport.admin import make_admin
from kqueue.transport.inspect import groups_with_members
from kqueue.transport.offsets import group_commits, topic_ends
from kqueue.transport.topic_reader import TopicReader, TopicReadError
from kqueue.view.derive import Settled
from kqueue.view.reading import PendingFence, counted_groups, dead_letter_of, lowest_commits, position_of
from kqueue.view.store import IngestBatch, StatusStore

log = logging.getLogger("kqueue.view")

FENCE_EVERY = 0.3  # seconds between reads of the groups' commits
DISCOVER_EVERY = 10.0  # seconds between looks for new groups and topics
TRIM_EVERY = 60.0  # seconds between enforcements of MAX_ROWS
MAX_ROWS = 2_000_000  # the view forgets the least recently touched tasks beyond this


def _now_ms() -> int:
    return int(time.time() * 1000)


class Ingest:
    def __init__(self, bootstrap: str, store: StatusStore, queues: Sequence[str], tiers: Sequence[str],
                 prefix: str = "", groups: Sequence[str] = (), max_rows: int = MAX_ROWS) -> None:
        self.bootstrap = bootstrap
        self.store = store
        self.queues = list(queues)
        self.tiers = list(tiers)
        self.prefix = prefix
        self.fixed_groups = list(groups)
        self.max_rows = max_rows
        self._stop = threading.Event()
        # Never joins a group: partitions are assigned. At a partition's end the reader says so, with
        # the end offset: past transaction markers, which are never delivered and would otherwise
        # leave the view one short of the end.
        self._reader = TopicReader(bootstrap, "view", **{"fetch.wait.max.ms": 100})
        self._admin = make_admin(bootstrap)
        self._assigned: set[tuple[str, int]] = set()
        self._read: dict[tuple[str, int], int] = store.read_positions()
        self._groups: dict[str, list[str]] = {}  # queue -> groups committing on its lanes
        self._seen_live: dict[str, float] = {}  # group -> when it last had members (monotonic)
        self._pending: PendingFence | None = None
        self._published: dict[tuple[str, int], Settled] = store.all_settled()  # a restart goes on from these
        self._next_fence = 0.0
        self._next_discovery = 0.0
        self._next_trim = 0.0
        self._lane_topics = {t for q in self.queues for t in worker_topics(q, prefix)}
        self._status, self._control = names.status_topic(prefix), names.control_topic(prefix)
        self._workers = names.workers_topic(prefix)

    def stop(self) -> None:
        self._stop.set()

    def run(self, on_started: Callable[[], None] | None = None) -> None:
        """Read until stopped; `on_started` is called once, after the first pass."""
        try:
            if not self._stop.is_set():
                self.step()
                if on_started is not None:
                    on_started()
            while not self._stop.is_set():
                self.step()
        finally:
            self._reader.close()

    def step(self) -> None:
        now = time.monotonic()
        if now >= self._next_discovery:
            self._discover()
            # Look again soon while a queue has no group yet (its workers are starting).
            waiting = not self._assigned or not all(self._groups.values())
            self._next_discovery = time.monotonic() + (1.0 if waiting else DISCOVER_EVERY)
        batch = IngestBatch()
        records, ends = self._reader.poll(2000, 0.1)
        for msg in records:
            self._take(msg, batch)
        for (topic, partition), end in ends:
            self._reached_end(topic, partition, end, batch)
        if batch:
            self._write(batch)
        if time.monotonic() >= self._next_fence:
            self._next_fence = time.monotonic() + FENCE_EVERY
            self._fence()

    def _write(self, batch: IngestBatch) -> None:
        try:
            self.store.write(batch, _now_ms())
        except (sqlite3.IntegrityError, OverflowError, ValueError) as exc:  # one bad value: keep the rest
            log.warning("status view could not store a batch (%s); storing what it can, one by one", exc)
            for part in batch.split():
                try:
                    self.store.write(part, _now_ms())
                except (sqlite3.IntegrityError, OverflowError, ValueError) as one:
                    log.warning("status view skipped a record it cannot store: %s", one)

    # -- reading --------------------------------------------------------------------------------------
    def _take(self, msg: Any, batch: IngestBatch) -> None:
        topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
        batch.read_positions[(topic, partition)] = offset + 1
        self._read[(topic, partition)] = offset + 1
        value = msg.value()
        try:
            if topic == self._status:
                if value is not None:
                    batch.events.append(TaskEvent.decode(value))
            elif topic == self._control:
                if value is not None:
                    command = ControlCommand.decode(value)
                    if command.command == "cancel":
                        batch.cancels.append((command.target, command.at_ms))
                    elif command.command == "limit":  # key `@limit:Q`; the newest record is Q's limit
                        batch.limits.append((command.target, limit_after(None, command)))
                    else:  # pause or resume: the key is the queue, the newest record its state
                        batch.pauses.append((command.target, pause_after(None, command)))
                elif msg.key() is not None:  # a tombstone: of a cancel, a queue's pause or its limit
                    key = msg.key().decode("utf-8", "replace")
                    limited = queue_of_limit_key(key)
                    if limited is not None:
                        batch.limits.append((limited, None))
                    else:
                        batch.pauses.append((key, None))
            elif topic == self._workers:
                if value is not None:
                    batch.reports.append(WorkerReport.decode(value))
            elif topic.endswith(".dlq"):
                batch.dead_letters.append(dead_letter_of(topic, partition, offset, header_map(msg.headers()),
                                                         self.prefix))
            else:
                batch.positions.append(position_of(topic, partition, offset, msg.timestamp()[1],
                                                   header_map(msg.headers()), self.prefix))
        except Exception as exc:  # one bad record must not stop the view
            log.warning("status view skipped %s/%d/%d: %s", topic, partition, offset, exc)

    def _reached_end(self, topic: str, partition: int, end: int, batch: IngestBatch) -> None:
        if end > self._read.get((topic, partition), 0):
            self._read[(topic, partition)] = batch.read_positions[(topic, partition)] = end

    def _discover(self) -> None:
        """Assign partitions of topics that exist now; find the groups consuming each queue."""
        wanted = [t for q in self.queues for t in queue_topics(q, self.prefix, self.tiers)]
        wanted += [self._status, self._control, self._workers]
        try:
            existing = self._reader.topic_partitions(wanted)
        except TopicReadError as exc:
            log.warning("status view cannot list topics: %s", exc)
            return
        new = {tp: self._read.get(tp) for tp in existing if tp not in self._assigned}
        if new:
            self._reader.add(new)
            self._assigned.update(new)
        groups = self._find_groups()
        if groups != self._groups:
            self.store.set_groups(groups)
        self._groups = groups

    def _find_groups(self) -> dict[str, list[str]]:
        groups = self.fixed_groups
        if not groups:
            try:
                members = {g: live for g, live in groups_with_members(self._admin).items()
                           if not g.startswith("_kqueue.")}
            except Exception as exc:
                log.warning("status view cannot list groups: %s", exc)
                return self._groups
            now = time.monotonic()
            self._seen_live.update((g, now) for g, live in members.items() if live)
            groups = counted_groups(members, self._seen_live, now)
        out: dict[str, list[str]] = {q: [] for q in self.queues}
        for group in groups:
            commits = self._commits(group)
            for queue in self.queues:
                lanes = set(worker_topics(queue, self.prefix))
                if any(t in lanes for t, _ in commits):
                    out[queue].append(group)
        return out

    def _commits(self, group: str) -> dict[tuple[str, int], tuple[int, str]]:
        try:
            commits = group_commits(self._admin, group, 10)
        except Exception:
            return {}
        return {tp: commit for tp, commit in commits.items() if tp[0] in self._lane_topics}

    # -- the fence -----------------------------------------------------------------------------------
    def _fence(self) -> None:
        self._sync_positions()
        if self._pending is not None:
            if not self._pending.reached(self._read):
                return
            settled = self._pending.settled(_now_ms(), self._published)
            if settled:
                self.store.publish_settled(settled, self._published)
                self._published.update(settled)
            self._pending = None
            if self.max_rows and time.monotonic() >= self._next_trim:
                # Counting millions of rows takes a while: once a minute is plenty for a bound.
                self._next_trim = time.monotonic() + TRIM_EVERY
                self.store.trim(self.max_rows)
        committed: dict[tuple[str, int], tuple[int, str]] = {}
        for groups in self._groups.values():
            if groups:
                committed.update(lowest_commits([self._commits(g) for g in groups]))
        if not committed:
            return
        outcome = [tp for tp in self._assigned if tp[0] not in self._lane_topics]
        targets = self._stable_ends(outcome)
        if targets is not None:
            self._pending = PendingFence(committed, targets, _now_ms())

    def _stable_ends(self, partitions: list[tuple[str, int]]) -> dict[tuple[str, int], int] | None:
        """Where the partitions end, open transactions included: a retry committed with the offsets
        just read may still be behind its partition's stable offset (its marker not there yet), so
        the view waits until its read_committed position has passed all of it."""
        if not partitions:
            return {}
        try:
            return topic_ends(self._admin, partitions, 10, committed_only=False)
        except Exception as exc:
            log.warning("status view cannot read topic ends: %s", exc)
            return None

    def _sync_positions(self) -> None:
        """A partition whose last records are transaction markers ends past the last record read:
        the consumer's position says how far it really got (stored too: the API waits on it)."""
        if not self._assigned:
            return
        moved: dict[tuple[str, int], int] = {}
        for key, offset in self._reader.positions(self._assigned).items():
            if offset > self._read.get(key, 0):
                self._read[key] = moved[key] = offset
        if moved:
            self.store.write(IngestBatch(read_positions=moved), _now_ms())
