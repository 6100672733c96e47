"""`kqueue dlq`: inspect and act on dead letters."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import typer
from rich.table import Table

from kqueue.cli.common import console, fail, options, resolve_bootstrap
from kqueue.control import dlq
from kqueue.core.codec import SchemaStore, decode_payload
from kqueue.core.errors import DecodeError, KqueueError
from kqueue.core.names import H_CONTENT_TYPE, H_PAYLOAD_AT, dlq_topic
from kqueue.transport.admin import existing_topics, make_admin

app = typer.Typer(help="Inspect and act on dead letters (Q.dlq).", no_args_is_help=True)


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S") if ms else "-"


def _context(ctx: typer.Context, queue: str) -> tuple[str, str]:
    opts = options(ctx)
    bootstrap = resolve_bootstrap(opts.bootstrap_servers)
    if dlq_topic(queue, opts.topic_prefix) not in existing_topics(make_admin(bootstrap)):
        raise fail(f"queue {queue!r} has no dead-letter topic ({dlq_topic(queue, opts.topic_prefix)})")
    return bootstrap, opts.topic_prefix


@app.command("list")
def list_letters(
    ctx: typer.Context,
    queue: str = typer.Argument(..., help="Queue name"),
    limit: int = typer.Option(50, "--limit", "-n", min=1, help="Show at most this many (newest last)"),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line instead of a table"),
    include_replayed: bool = typer.Option(False, "--all", help="Also show dead letters already replayed"),
) -> None:
    """Dead letters waiting for a decision: id, type, key, attempts, error, failed-at."""
    bootstrap, prefix = _context(ctx, queue)
    letters = (dlq.dead_letters(bootstrap, queue, prefix) if include_replayed
               else dlq.pending_dead_letters(bootstrap, queue, prefix))
    letters.sort(key=lambda letter: letter.failed_at)
    shown = letters[-limit:]
    if as_json:
        for letter in shown:
            typer.echo(json.dumps({
                "task_id": letter.task_id, "type": letter.task_type,
                "key": letter.key.decode(errors="replace") if letter.key else None,
                "attempts": letter.attempts, "error": letter.error, "failed_at": letter.failed_at,
                "position": letter.position,
            }))
        return
    table = Table(title=f"dead letters of {queue} ({len(shown)} of {len(letters)})")
    for column in ("task id", "type", "key", "attempts", "error", "failed at (UTC)"):
        table.add_column(column, overflow="fold", justify="right" if column == "attempts" else "left")
    for letter in shown:
        key = letter.key.decode(errors="replace") if letter.key else "-"
        table.add_row(letter.task_id, letter.task_type or "-", key, str(letter.attempts), letter.error[:80],
                      _when(letter.failed_at))
    console.print(table)


@app.command()
def show(
    ctx: typer.Context,
    queue: str = typer.Argument(..., help="Queue name"),
    task_id: str = typer.Argument(..., help="Task id (kq-id)"),
    schemas_dir: Path | None = typer.Option(None, "--schemas", help="Folder of .avsc files to decode Avro payloads"),
) -> None:
    """One dead letter: its headers (error, trace, origin) and its payload."""
    bootstrap, prefix = _context(ctx, queue)
    matches = [letter for letter in dlq.dead_letters(bootstrap, queue, prefix) if letter.task_id == task_id]
    if not matches:
        raise fail(f"no dead letter with id {task_id} in {dlq_topic(queue, prefix)}")
    letter = matches[-1]
    table = Table(title=f"dead letter {task_id} at {letter.position}", show_header=False)
    table.add_column("header", style="bold")
    table.add_column("value", overflow="fold")
    for name, value in sorted(letter.headers.items()):
        table.add_row(name, value)
    console.print(table)
    body = letter.value
    if letter.payload_at is not None:  # a dead letter by reference: the payload is where it says
        payload_record = dlq.payload_of(bootstrap, letter)
        where = letter.headers.get(H_PAYLOAD_AT)
        if payload_record is None:
            console.print(f"payload: by reference at {where}, which is gone (retention or deleted records)",
                          highlight=False)
            return
        console.print(f"payload: by reference, read from {where}", highlight=False)
        body = payload_record.value
    store = SchemaStore()
    local = schemas_dir or (Path("schemas") if Path("schemas").is_dir() else None)
    if local is not None:
        store.load_dir(local)
    try:
        payload = decode_payload(body, letter.headers.get(H_CONTENT_TYPE), None, store)
        console.print_json(json.dumps(payload, default=str))
    except DecodeError as exc:
        console.print(f"payload ({len(body or b'')} bytes, {exc}): {(body or b'').hex()[:400]}",
                      highlight=False)


@app.command()
def replay(
    ctx: typer.Context,
    queue: str = typer.Argument(..., help="Queue name"),
    ids: list[str] = typer.Option([], "--id", help="Replay this task id (repeatable)"),
    everything: bool = typer.Option(False, "--all", help="Replay every pending dead letter"),
    task_type: str | None = typer.Option(None, "--type", "-t", help="Replay dead letters of this task type"),
    dry_run: bool = typer.Option(False, "--dry-run", help="Say what would be replayed, change nothing"),
    ordered: bool = typer.Option(False, "--ordered", help="In the order the tasks were first enqueued, so a "
                                 "key's tasks go back in their original order [default: the DLQ's order]"),
) -> None:
    """Put dead letters back on the queue (attempt reset, key kept); each is replayed at most once."""
    if not ids and not everything and task_type is None:
        raise fail("say what to replay: --id ID (repeatable), --type T or --all", 2)
    bootstrap, prefix = _context(ctx, queue)
    try:
        report = dlq.replay(bootstrap, queue, ids, task_type, everything, dry_run, prefix, ordered=ordered)
    except KqueueError as exc:  # e.g. ReplayConflict: a concurrent replay fenced this one
        raise fail(str(exc)) from None
    verb = "would replay" if dry_run else "replayed"
    console.print(f"{verb} {len(report.replayed)} dead letter(s) to {queue}; "
                  f"{len(report.skipped)} already replayed", highlight=False)
    for letter in dlq.in_enqueue_order(report.replayed) if ordered else report.replayed:
        console.print(f"  {letter.task_id}  {letter.task_type}  {letter.error[:60]}", highlight=False)
    unknown = set(ids) - {letter.task_id for letter in report.replayed + report.skipped + report.missing}
    if unknown:
        raise fail(f"no dead letter with id {', '.join(sorted(unknown))}")
    if report.missing:
        gone = ", ".join(f"{letter.task_id} (payload was at {letter.headers.get(H_PAYLOAD_AT)})"
                         for letter in report.missing)
        raise fail(f"could not replay {len(report.missing)} dead letter(s) by reference, their payload is gone "
                   f"(retention or deleted records): {gone}")


@app.command()
def purge(
    ctx: typer.Context,
    queue: str = typer.Argument(..., help="Queue name"),
    everything: bool = typer.Option(False, "--all", help="Delete every dead letter"),
    before: str | None = typer.Option(None, "--before", help="Delete dead letters appended before this "
                                      "ISO time (e.g. 2026-11-28T12:00:00Z)"),
) -> None:
    """Delete dead letters for good."""
    if everything == (before is not None):
        raise fail("give exactly one of --all or --before TIME", 2)
    before_ms = None
    if before is not None:
        try:
            when = datetime.fromisoformat(before.replace("Z", "+00:00"))
        except ValueError:
            raise fail(f"--before {before!r} is not an ISO time like 2026-11-28T12:00:00Z", 2) from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        before_ms = int(when.timestamp() * 1000)
    bootstrap, prefix = _context(ctx, queue)
    removed = dlq.purge(bootstrap, queue, before_ms, prefix)
    console.print(f"purged {removed} dead letter(s) from {dlq_topic(queue, prefix)}", highlight=False)
