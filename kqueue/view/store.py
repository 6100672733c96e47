"""The status view's embedded store: sqlite3 in WAL mode (one writer, many readers, survives restarts).

The ingest writes each batch of what it read together with its read positions in one transaction,
so a restart resumes where the last committed batch ended instead of re-reading the topics. The
API reads rows by task id (a primary-key lookup: tens of microseconds with millions of rows).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path

from kqueue.core.control import Paused
from kqueue.core.queue_limits import QueueLimit
from kqueue.core.records import TP
from kqueue.core.reports import WorkerReport
from kqueue.core.status import TaskEvent
from kqueue.view import queue_state, timeline
from kqueue.view.derive import Settled, TaskRow

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    task_id TEXT PRIMARY KEY, queue TEXT, task_type TEXT,
    topic TEXT, part INTEGER, off INTEGER, generation INTEGER NOT NULL DEFAULT -1,
    attempt INTEGER NOT NULL DEFAULT 0, in_tier INTEGER NOT NULL DEFAULT 0, tier TEXT, record_ms INTEGER,
    not_before INTEGER, enqueued_ms INTEGER, max_attempts INTEGER, error TEXT,
    event TEXT, event_attempt INTEGER, event_ms INTEGER, result TEXT,
    worker TEXT, started_ms INTEGER, run_attempt INTEGER, run_seen_ms INTEGER,
    cancel_ms INTEGER, accepted_ms INTEGER, touched_ms INTEGER NOT NULL DEFAULT 0, done_ms INTEGER
);
CREATE INDEX IF NOT EXISTS tasks_touched ON tasks (touched_ms);
CREATE INDEX IF NOT EXISTS tasks_position ON tasks (topic, part, off);
CREATE INDEX IF NOT EXISTS tasks_done ON tasks (queue, done_ms);
CREATE TABLE IF NOT EXISTS read_positions (topic TEXT, part INTEGER, next_offset INTEGER,
    PRIMARY KEY (topic, part));
CREATE TABLE IF NOT EXISTS settled (topic TEXT, part INTEGER, committed INTEGER, metadata TEXT, at_ms INTEGER,
    PRIMARY KEY (topic, part));
CREATE TABLE IF NOT EXISTS dead_letters (queue TEXT, part INTEGER, off INTEGER, task_id TEXT, task_type TEXT,
    attempts INTEGER, failed_at INTEGER, error TEXT, PRIMARY KEY (queue, part, off));
CREATE INDEX IF NOT EXISTS dead_letters_failed ON dead_letters (queue, failed_at);
CREATE TABLE IF NOT EXISTS groups (queue TEXT PRIMARY KEY, names TEXT);
CREATE TABLE IF NOT EXISTS workers (worker_id TEXT PRIMARY KEY, grp TEXT, member_id TEXT, at_ms INTEGER,
    concurrency INTEGER, busy INTEGER, partitions TEXT, running INTEGER, stopping INTEGER);
CREATE TABLE IF NOT EXISTS pauses (queue TEXT PRIMARY KEY, since_ms INTEGER, reason TEXT);
"""

_RENAMED = {"partition": "part", "offset": "off"}  # SQL keywords as column names
_COLUMNS = [_RENAMED.get(f.name, f.name) for f in fields(TaskRow)]
_SELECT_ROW = f"SELECT {', '.join(_COLUMNS)} FROM tasks WHERE task_id = ?"

# A newer position replaces the row's: ordered by (replay generation, attempt, lane after tier),
# so records read from different topics out of order never move a task backwards.
_UPSERT_POSITION = """
INSERT INTO tasks (task_id, queue, task_type, topic, part, off, generation, attempt, in_tier, tier,
                   record_ms, not_before, enqueued_ms, max_attempts, error, touched_ms)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (task_id) DO UPDATE SET
    queue = excluded.queue, task_type = coalesce(excluded.task_type, task_type), topic = excluded.topic,
    part = excluded.part, off = excluded.off, generation = excluded.generation,
    attempt = excluded.attempt, in_tier = excluded.in_tier, tier = excluded.tier, record_ms = excluded.record_ms,
    not_before = excluded.not_before, enqueued_ms = coalesce(excluded.enqueued_ms, enqueued_ms),
    max_attempts = coalesce(excluded.max_attempts, max_attempts), error = coalesce(excluded.error, error),
    touched_ms = excluded.touched_ms
WHERE (excluded.generation, excluded.attempt, 1 - excluded.in_tier) > (generation, attempt, 1 - in_tier)
   OR ((excluded.generation, excluded.attempt, excluded.in_tier) = (generation, attempt, in_tier)
       AND ?17 = topic || '/' || part || '/' || off)
"""
# ?17: the position a record is a copy of (an ordered key's parked task, appended again when its turn
# came: kq-origin names where it was parked); a copy replaces that position though it ties with it.

# Events of one task arrive in order (one key, one partition): the newest replaces the last.
_UPSERT_EVENT = """
INSERT INTO tasks (task_id, queue, task_type, event, event_attempt, event_ms, error, result, worker, touched_ms,
                   done_ms)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?,
        CASE WHEN ?4 IN ('completed', 'failed', 'cancelled') THEN ?6 ELSE NULL END)
ON CONFLICT (task_id) DO UPDATE SET
    queue = coalesce(queue, excluded.queue), task_type = coalesce(task_type, excluded.task_type),
    event = excluded.event, event_attempt = excluded.event_attempt, event_ms = excluded.event_ms,
    error = coalesce(excluded.error, error), result = excluded.result, worker = coalesce(excluded.worker, worker),
    touched_ms = excluded.touched_ms,
    done_ms = CASE WHEN excluded.event IN ('completed', 'failed', 'cancelled') THEN excluded.event_ms ELSE NULL END
"""

_UPSERT_RUNNING = """
INSERT INTO tasks (task_id, queue, task_type, worker, started_ms, run_attempt, run_seen_ms, touched_ms)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (task_id) DO UPDATE SET
    queue = coalesce(queue, excluded.queue), task_type = coalesce(task_type, excluded.task_type),
    worker = excluded.worker, started_ms = excluded.started_ms, run_attempt = excluded.run_attempt,
    run_seen_ms = excluded.run_seen_ms
WHERE excluded.run_seen_ms >= coalesce(run_seen_ms, 0)
"""


@dataclass
class Position:
    """A task record read from a lane or a delay tier (headers only)."""

    task_id: str
    queue: str
    task_type: str | None
    topic: str
    partition: int
    offset: int
    generation: int
    attempt: int
    tier: str | None
    record_ms: int
    not_before: int | None
    enqueued_ms: int | None
    max_attempts: int | None
    error: str | None
    copy_of: str | None = None  # kq-origin when it names another position of the same lane (a parked task's copy)


@dataclass(frozen=True)
class DeadLetterRow:
    """A dead letter as the view lists it (headers only; the payload stays in Kafka)."""

    queue: str
    partition: int
    offset: int
    task_id: str
    task_type: str
    attempts: int
    failed_at: int
    error: str


@dataclass
class IngestBatch:
    """What one ingest pass read; written in one transaction with the read positions."""

    positions: list[Position] = field(default_factory=list)
    events: list[TaskEvent] = field(default_factory=list)
    reports: list[WorkerReport] = field(default_factory=list)
    cancels: list[tuple[str, int]] = field(default_factory=list)  # (task id, requested at)
    dead_letters: list[DeadLetterRow] = field(default_factory=list)
    # _kqueue.control records keyed by a queue, in order: its pause, or None (resumed; or a tombstone)
    pauses: list[tuple[str, Paused | None]] = field(default_factory=list)
    limits: list[tuple[str, QueueLimit | None]] = field(default_factory=list)  # key `@limit:Q`: Q's limit, in order
    read_positions: dict[tuple[str, int], int] = field(default_factory=dict)

    def split(self) -> list[IngestBatch]:
        """One batch per item (the read positions with the last), to store what can be stored."""
        parts = [IngestBatch(positions=[p]) for p in self.positions]
        parts += [IngestBatch(events=[e]) for e in self.events]
        parts += [IngestBatch(reports=[r]) for r in self.reports]
        parts += [IngestBatch(cancels=[c]) for c in self.cancels]
        parts += [IngestBatch(dead_letters=[d]) for d in self.dead_letters]
        parts += [IngestBatch(pauses=[p]) for p in self.pauses]
        parts += [IngestBatch(limits=[limit]) for limit in self.limits]
        parts.append(IngestBatch(read_positions=dict(self.read_positions)))
        return parts

    def __bool__(self) -> bool:
        return bool(self.positions or self.events or self.reports or self.cancels or self.read_positions
                    or self.dead_letters or self.pauses or self.limits)


class StatusStore:
    """One connection per thread (sqlite connections are not shared across threads)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._local = threading.local()
        with self._conn() as conn:
            conn.executescript(_SCHEMA)
            conn.executescript(timeline.SCHEMA)
            conn.executescript(queue_state.SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable at checkpoints, never corrupt
            self._local.conn = conn
        return conn

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # -- writes (the ingest; and the API for tasks it accepted) ------------------------------------------
    def write(self, batch: IngestBatch, now_ms: int) -> None:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(_UPSERT_POSITION, [
                (p.task_id, p.queue, p.task_type, p.topic, p.partition, p.offset, p.generation, p.attempt,
                 1 if p.tier is not None else 0, p.tier, p.record_ms, p.not_before, p.enqueued_ms, p.max_attempts,
                 p.error, now_ms, p.copy_of) for p in batch.positions])
            conn.executemany(_UPSERT_EVENT, [
                (e.task_id, e.queue, e.task_type, e.status, e.attempt, e.at_ms, e.error, e.result, e.worker, now_ms)
                for e in batch.events])
            for report in batch.reports:
                self._write_report(conn, report)
            conn.executemany(
                "INSERT INTO tasks (task_id, cancel_ms, touched_ms) VALUES (?, ?, ?) "
                "ON CONFLICT (task_id) DO UPDATE SET cancel_ms = excluded.cancel_ms",
                [(task_id, at, now_ms) for task_id, at in batch.cancels])
            conn.executemany(
                "INSERT OR REPLACE INTO dead_letters (queue, part, off, task_id, task_type, attempts, failed_at, "
                "error) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(d.queue, d.partition, d.offset, d.task_id, d.task_type, d.attempts, d.failed_at, d.error)
                 for d in batch.dead_letters])
            for queue, paused in batch.pauses:
                queue_state.write_pause(conn, queue, paused)
            queue_state.record_limits(conn, batch.limits)
            timeline.record(conn, batch)
            self._finish_late_reads(conn, batch, now_ms)
            conn.executemany(
                "INSERT OR REPLACE INTO read_positions (topic, part, next_offset) VALUES (?, ?, ?)",
                [(t, p, o) for (t, p), o in batch.read_positions.items()])
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    @staticmethod
    def _finish_late_reads(conn: sqlite3.Connection, batch: IngestBatch, now_ms: int) -> None:
        """Lane records read after a commit that had already passed them are finished now."""
        lowest: dict[TP, int] = {}
        for p in batch.positions:
            if p.tier is None:
                tp = (p.topic, p.partition)
                lowest[tp] = min(lowest.get(tp, p.offset), p.offset)
        for (topic, partition), low in lowest.items():
            found = conn.execute("SELECT committed FROM settled WHERE topic = ? AND part = ?",
                                 (topic, partition)).fetchone()
            if found is not None and low < found[0]:
                timeline.commit_passed(conn, topic, partition, low, found[0], now_ms)

    def _write_report(self, conn: sqlite3.Connection, report: WorkerReport) -> None:
        conn.execute(
            "INSERT OR REPLACE INTO workers (worker_id, grp, member_id, at_ms, concurrency, busy, partitions, "
            "running, stopping) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (report.worker_id, report.group, report.member_id, report.at_ms, report.concurrency, report.busy,
             " ".join(report.partitions), len(report.running), int(report.stopping)))
        conn.executemany(_UPSERT_RUNNING, [
            (r.task_id, r.queue, r.task_type, report.worker_id, r.started_ms, r.attempt, report.at_ms, report.at_ms)
            for r in report.running])

    def note_pause(self, queue: str, paused: Paused | None) -> None:
        """A pause or resume the API just wrote to Kafka: shown at once, before the ingest reads it back."""
        queue_state.write_pause(self._conn(), queue, paused)

    def pauses(self) -> dict[str, Paused]:
        """The paused queues, as last read from _kqueue.control."""
        rows = self._conn().execute("SELECT queue, since_ms, reason FROM pauses").fetchall()
        return {q: Paused(since, reason) for q, since, reason in rows}

    def note_limit(self, queue: str, limit: QueueLimit | None) -> None:  # as note_pause, for a queue's limit
        queue_state.write_limit(self._conn(), queue, limit)

    def limits(self) -> dict[str, QueueLimit]:  # the queue-wide rate limits, as last read from _kqueue.control
        return queue_state.read_limits(self._conn())

    def publish_settled(self, settled: dict[TP, Settled], previous: dict[TP, Settled]) -> None:
        """Commits that moved, and the tasks they passed: finished now (history and figures need when)."""
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(
                "INSERT OR REPLACE INTO settled (topic, part, committed, metadata, at_ms) VALUES (?, ?, ?, ?, ?)",
                [(t, p, s.committed, s.metadata, s.at_ms) for (t, p), s in settled.items()])
            for (topic, partition), now in settled.items():
                before = previous.get((topic, partition))
                timeline.commit_passed(conn, topic, partition, before.committed if before else 0, now.committed,
                                       now.at_ms)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def set_groups(self, groups: dict[str, list[str]]) -> None:
        """The consumer groups found working each queue (the API's queue figures use them)."""
        self._conn().executemany("INSERT OR REPLACE INTO groups (queue, names) VALUES (?, ?)",
                                 [(q, " ".join(g)) for q, g in groups.items()])

    def groups(self) -> dict[str, list[str]]:
        return {q: n.split() for q, n in self._conn().execute("SELECT queue, names FROM groups")}

    def accept(self, task_id: str, queue: str, task_type: str, at_ms: int, not_before: int | None = None,
               tier: str | None = None) -> None:
        """A task the API just produced: known (queued, or scheduled) before the ingest reads it back."""
        self._conn().execute(
            "INSERT INTO tasks (task_id, queue, task_type, accepted_ms, not_before, tier, touched_ms) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (task_id) DO NOTHING",
            (task_id, queue, task_type, at_ms, not_before, tier, at_ms))

    def note_cancel(self, task_id: str, at_ms: int) -> None:
        """A cancel the API just wrote to Kafka: pending from now on, before the ingest reads it back
        (which then keeps the command's own time, a moment later)."""
        self._conn().execute("UPDATE tasks SET cancel_ms = max(coalesce(cancel_ms, 0), ?) WHERE task_id = ?",
                             (at_ms, task_id))

    def trim(self, max_rows: int) -> int:
        """Forget the least recently touched tasks beyond `max_rows`, with their timelines, and the
        oldest dead letters beyond as many (the view's bound; Kafka keeps the records)."""
        conn = self._conn()
        (count,) = conn.execute("SELECT count(*) FROM tasks").fetchone()
        excess = count - max_rows
        conn.execute("BEGIN IMMEDIATE")
        try:
            if excess > 0:
                ids = conn.execute("SELECT task_id FROM tasks ORDER BY touched_ms LIMIT ?", (excess,)).fetchall()
                conn.executemany("DELETE FROM tasks WHERE task_id = ?", ids)
                conn.executemany("DELETE FROM history WHERE task_id = ?", ids)
            conn.execute("DELETE FROM dead_letters WHERE rowid IN (SELECT rowid FROM dead_letters "
                         "ORDER BY failed_at DESC LIMIT -1 OFFSET ?)", (max_rows,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return max(0, int(excess))

    # -- reads ---------------------------------------------------------------------------------------
    def row(self, task_id: str) -> TaskRow | None:
        found = self._conn().execute(_SELECT_ROW, (task_id,)).fetchone()
        if found is None:
            return None
        row = TaskRow(*found)
        row.in_tier = bool(row.in_tier)
        return row

    def settled(self, topic: str, partition: int) -> Settled | None:
        found = self._conn().execute(
            "SELECT committed, metadata, at_ms FROM settled WHERE topic = ? AND part = ?",
            (topic, partition)).fetchone()
        return None if found is None else Settled(found[0], found[1] or "", found[2] or 0)

    def all_settled(self) -> dict[tuple[str, int], Settled]:
        rows = self._conn().execute("SELECT topic, part, committed, metadata, at_ms FROM settled").fetchall()
        return {(t, p): Settled(c, m or "", a or 0) for t, p, c, m, a in rows}

    def read_positions(self) -> dict[tuple[str, int], int]:
        rows = self._conn().execute("SELECT topic, part, next_offset FROM read_positions").fetchall()
        return {(t, p): o for t, p, o in rows}

    def workers(self) -> list[dict[str, object]]:
        rows = self._conn().execute(
            "SELECT worker_id, grp, member_id, at_ms, concurrency, busy, partitions, running, stopping "
            "FROM workers ORDER BY grp, worker_id").fetchall()
        return [{"worker_id": w, "group": g, "member_id": m, "at_ms": at, "concurrency": c, "busy": b,
                 "partitions": parts.split() if parts else [], "running": r, "stopping": bool(s)}
                for w, g, m, at, c, b, parts, r, s in rows]

    def dead_letters(self, queue: str, limit: int, offset: int = 0, task_type: str | None = None,
                     error: str | None = None) -> list[tuple[DeadLetterRow, bool]]:
        """A page of a queue's dead letters, newest first, each with whether it is still pending (not
        replayed: the task's newest event is the `failed` one written with this letter, or none is
        known). `task_type` matches exactly, `error` as a substring (ASCII letters in any case)."""
        where, args = _dead_letter_filter(queue, task_type, error)
        rows = self._conn().execute(
            "SELECT d.queue, d.part, d.off, d.task_id, d.task_type, d.attempts, d.failed_at, d.error, t.event, "
            f"t.event_ms FROM dead_letters d LEFT JOIN tasks t ON t.task_id = d.task_id WHERE {where} "
            # part and offset after the time: letters failed in the same millisecond keep one order,
            # so consecutive pages neither repeat nor skip a letter.
            "ORDER BY d.failed_at DESC, d.part DESC, d.off DESC LIMIT ? OFFSET ?",
            (*args, limit, offset)).fetchall()
        return [(DeadLetterRow(*r[:8]), r[8] is None or (r[8] == "failed" and r[9] == r[6])) for r in rows]

    def count_dead_letters(self, queue: str, task_type: str | None = None, error: str | None = None) -> int:
        """How many of a queue's dead letters the same filter matches (the pages' total)."""
        where, args = _dead_letter_filter(queue, task_type, error)
        (n,) = self._conn().execute(f"SELECT count(*) FROM dead_letters d WHERE {where}", args).fetchone()
        return int(n)

    def timeline(self, task_id: str) -> list[dict[str, object]]:
        return timeline.of_task(self._conn(), task_id)

    def series(self, queue: str, now_ms: int, minutes: int = 5, bucket_s: int = 10) -> list[dict[str, object]]:
        return timeline.series(self._conn(), queue, now_ms, minutes, bucket_s)

    def count(self) -> int:
        (n,) = self._conn().execute("SELECT count(*) FROM tasks").fetchone()
        return int(n)

    def task_ids(self, limit: int, queue: str | None = None) -> Iterable[str]:
        sql = "SELECT task_id FROM tasks" + (" WHERE queue = ?" if queue else "") + " ORDER BY touched_ms DESC LIMIT ?"
        args: tuple[object, ...] = (queue, limit) if queue else (limit,)
        return [r[0] for r in self._conn().execute(sql, args)]


def _dead_letter_filter(queue: str, task_type: str | None, error: str | None) -> tuple[str, tuple[str, ...]]:
    """The WHERE clause (over `dead_letters d`) and its arguments; the error's text is matched
    literally: LIKE's wildcards and the escape character in it are escaped."""
    where, args = "d.queue = ?", [queue]
    if task_type is not None:
        where += " AND d.task_type = ?"
        args.append(task_type)
    if error:
        literal = error.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        where += " AND d.error LIKE ? ESCAPE '\\'"
        args.append(f"%{literal}%")
    return where, tuple(args)
