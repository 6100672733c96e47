"""Each task's timeline and each queue's figures over time, kept in the status view's sqlite.

The timeline lists what the view read about a task, once each: where it was appended (lane or delay
tier, with the attempt and the error that sent it there), the worker seen running it, its final
event, or the commit that passed it. The figures (finished per 10 s, failed, latency percentiles)
come from the tasks' finish times.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kqueue.view.store import IngestBatch

SCHEMA = """
CREATE TABLE IF NOT EXISTS history (task_id TEXT, what TEXT, at_ms INTEGER, detail TEXT,
    PRIMARY KEY (task_id, what));
"""

_ADD = "INSERT OR IGNORE INTO history (task_id, what, at_ms, detail) VALUES (?, ?, ?, ?)"


def record(conn: sqlite3.Connection, batch: IngestBatch) -> None:
    """Inside the ingest's transaction: what this batch says about each task's life."""
    rows: list[tuple[str, str, int, str]] = []
    for p in batch.positions:
        if p.tier is None and p.attempt == 1 and p.generation < 0:
            continue  # a first delivery: the row itself says when it was enqueued (no write per task)
        if p.tier is not None:
            what = f"waiting in the {p.tier} tier (attempt {p.attempt})"
            detail = f"after {p.error}" if p.error else ""
        else:
            what = f"queued on {p.topic} (attempt {p.attempt})"
            detail = ""
        rows.append((p.task_id, f"{what} @{p.topic}/{p.partition}/{p.offset}", p.record_ms, detail))
    for e in batch.events:
        rows.append((e.task_id, f"{e.status} (attempt {e.attempt}) @{e.at_ms}", e.at_ms, e.error or ""))
    for report in batch.reports:
        for r in report.running:
            rows.append((r.task_id, f"running on {report.worker_id} (attempt {r.attempt})", r.started_ms, ""))
    for task_id, at in batch.cancels:
        rows.append((task_id, f"cancel requested @{at}", at, ""))
    conn.executemany(_ADD, rows)


def commit_passed(conn: sqlite3.Connection, topic: str, partition: int, start: int, end: int, at_ms: int) -> None:
    """Lane tasks at offsets [start, end) are settled: finished now, unless an event said when (the
    timeline shows it from the row: no history write per completed task)."""
    conn.execute(
        "UPDATE tasks SET done_ms = ? WHERE topic = ? AND part = ? AND off >= ? AND off < ? AND in_tier = 0 "
        "AND done_ms IS NULL", (at_ms, topic, partition, start, end))


def of_task(conn: sqlite3.Connection, task_id: str) -> list[dict[str, Any]]:
    """The recorded steps, with the two every task has and that are not written per task: enqueued
    (from the row) and, for a completion no event announced, completed when the commit passed it."""
    steps: list[tuple[int, str, str]] = []
    row = conn.execute("SELECT queue, coalesce(enqueued_ms, accepted_ms), done_ms, event FROM tasks "
                       "WHERE task_id = ?", (task_id,)).fetchone()
    if row is not None and row[1] is not None:
        steps.append((row[1], f"enqueued on {row[0]} (attempt 1)", ""))
    steps += [(at, what.split(" @", 1)[0], detail) for at, what, detail in conn.execute(
        "SELECT at_ms, what, detail FROM history WHERE task_id = ? ORDER BY at_ms, rowid", (task_id,))]
    if row is not None and row[2] is not None and row[3] is None:
        steps.append((row[2], "completed", ""))
    steps.sort(key=lambda step: step[0])
    return [{"at": at, "what": what, "detail": detail} for at, what, detail in steps]


def _percentile(values: list[int], share: float) -> int | None:
    if not values:
        return None
    values.sort()
    return values[min(len(values) - 1, int(len(values) * share))]


def series(conn: sqlite3.Connection, queue: str, now_ms: int, minutes: int, bucket_s: int) -> list[dict[str, Any]]:
    """Per bucket of the last `minutes`: tasks finished (completed, failed, cancelled) and the latency
    percentiles (enqueue to finish) of the completed ones."""
    width = bucket_s * 1000
    start = (now_ms - minutes * 60_000) // width * width
    buckets: dict[int, dict[str, Any]] = {
        b: {"at": b, "completed": 0, "failed": 0, "cancelled": 0, "latencies": []}
        for b in range(start, now_ms + 1, width)}
    rows = conn.execute(
        "SELECT done_ms, coalesce(event, 'completed'), coalesce(enqueued_ms, accepted_ms) FROM tasks "
        "WHERE queue = ? AND done_ms >= ? ORDER BY done_ms LIMIT 200000", (queue, start)).fetchall()
    for done, outcome, enqueued in rows:
        bucket = buckets.get(done // width * width)
        if bucket is None:
            continue
        kind = outcome if outcome in ("failed", "cancelled") else "completed"
        bucket[kind] += 1
        if kind == "completed" and enqueued is not None and len(bucket["latencies"]) < 5000:
            bucket["latencies"].append(done - enqueued)
    out = []
    for bucket in buckets.values():
        latencies = bucket.pop("latencies")
        bucket["p50_ms"] = _percentile(latencies, 0.50)
        bucket["p99_ms"] = _percentile(latencies, 0.99)
        out.append(bucket)
    return out
