"""A queue's state from `_kqueue.control` as kept in the status view's sqlite: its pause (key = the
queue; table `pauses`, created with the store's schema) and its queue-wide rate limit (key
`@limit:<queue>`; table `queue_limits`). The API shows both with the queue's figures."""

from __future__ import annotations

import sqlite3

from kqueue.core.control import Paused
from kqueue.core.queue_limits import QueueLimit
from kqueue.core.ratelimit import parse_rate

SCHEMA = """
CREATE TABLE IF NOT EXISTS queue_limits (queue TEXT PRIMARY KEY, rate TEXT, since_ms INTEGER);
"""


def write_pause(conn: sqlite3.Connection, queue: str, paused: Paused | None) -> None:
    if paused is None:
        conn.execute("DELETE FROM pauses WHERE queue = ?", (queue,))
    else:
        conn.execute("INSERT OR REPLACE INTO pauses (queue, since_ms, reason) VALUES (?, ?, ?)",
                     (queue, paused.since, paused.reason))


def write_limit(conn: sqlite3.Connection, queue: str, limit: QueueLimit | None) -> None:
    """The queue's limit now (None: it has none). A limit set again at the same rate keeps its since."""
    if limit is None:
        conn.execute("DELETE FROM queue_limits WHERE queue = ?", (queue,))
        return
    conn.execute("INSERT INTO queue_limits (queue, rate, since_ms) VALUES (?, ?, ?) ON CONFLICT (queue) DO UPDATE "
                 "SET since_ms = CASE WHEN rate = excluded.rate THEN since_ms ELSE excluded.since_ms END, "
                 "rate = excluded.rate", (queue, str(limit.rate), limit.since))


def record_limits(conn: sqlite3.Connection, limits: list[tuple[str, QueueLimit | None]]) -> None:
    """Inside the ingest's transaction: the limit records of a batch, in order."""
    for queue, limit in limits:
        write_limit(conn, queue, limit)


def read_limits(conn: sqlite3.Connection) -> dict[str, QueueLimit]:
    rows = conn.execute("SELECT queue, rate, since_ms FROM queue_limits").fetchall()
    return {queue: QueueLimit(parse_rate(rate), since) for queue, rate, since in rows}
