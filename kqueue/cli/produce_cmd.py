"""`kqueue produce`: enqueue tasks from the shell."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from kqueue.cli.common import console, fail, options, resolve_bootstrap
from kqueue.core.durations import parse_duration
from kqueue.core.errors import RecordTooLarge
from kqueue.core.json_rules import loads_checked
from kqueue.core.priority import lane_of
from kqueue.sdk.app import App
from kqueue.sdk.sender import sender_for


def _default_schemas_dir() -> Path | None:
    explicit = os.environ.get("KQUEUE_SCHEMAS_DIR")
    if explicit:
        return Path(explicit)
    local = Path("schemas")
    return local if local.is_dir() else None


def _read_payloads(json_text: str | None, file: Path | None, stdin: bool) -> list[Any]:
    """Every payload, parsed before anything is sent; a bad line names itself."""
    if [json_text is not None, file is not None, stdin].count(True) != 1:
        raise ValueError("give exactly one of --json, --file or - (stdin)")
    if json_text is not None:
        try:
            return [loads_checked(json_text)]
        except ValueError as exc:
            raise ValueError(f"--json is not valid JSON: {exc}") from None
    if file is not None:
        try:
            lines = file.read_text().splitlines()
        except OSError as exc:
            raise ValueError(f"cannot read {file}: {exc.strerror}") from None
        source = str(file)
    else:
        lines = sys.stdin.read().splitlines()
        source = "stdin"
    payloads = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            payloads.append(loads_checked(line))
        except ValueError as exc:
            raise ValueError(f"{source} line {number} is not valid JSON: {exc}") from None
    if not payloads:
        raise ValueError(f"{source} holds no payloads")
    return payloads


def produce(
    ctx: typer.Context,
    queue: str = typer.Argument(..., help="Queue to enqueue into"),
    task_type: str = typer.Option(..., "--type", "-t", help="Task type (kq-type); its schema is used if found"),
    key: str | None = typer.Option(None, "--key", "-k", help="Ordering key (tasks of one key run in order)"),
    json_text: str | None = typer.Option(None, "--json", "-j", help="One payload as JSON"),
    file: Path | None = typer.Option(None, "--file", "-f", help="A JSON-lines file, one payload per line"),
    source: str | None = typer.Argument(None, metavar="[-]", help="- reads JSON lines from standard input"),
    priority: str = typer.Option("normal", "--priority", "-p",
                                 help="high, normal or low, or 0-9 (9 most urgent: 7-9 high, 3-6 normal, 0-2 low)"),
    idempotency_key: str | None = typer.Option(None, "--idempotency-key", help="Set the kq-idempotency-key "
                                               "header: every enqueue of the key gets the same task id, and the "
                                               "task runs once within its type's window (24 h by default)"),
    schemas_dir: Path | None = typer.Option(None, "--schemas", help="Folder of .avsc files [default: ./schemas]"),
    max_attempts: int = typer.Option(5, "--max-attempts", min=1, help="Attempts before the DLQ"),
    delay: str | None = typer.Option(None, "--delay", "-d", help="Start no sooner than this from now (90s, 5m, 1h)"),
) -> None:
    """Enqueue tasks: prints each task id, or a summary for files."""
    if source not in (None, "-"):
        raise fail(f"unexpected argument {source!r}; use - to read standard input", 2)
    stdin = source == "-"
    try:
        priority = lane_of(priority)
    except ValueError as exc:
        raise fail(f"--priority: {exc}", 2) from None
    try:
        payloads = _read_payloads(json_text, file, stdin)
    except ValueError as exc:
        raise fail(str(exc), 2) from None
    delay_seconds = None
    if delay is not None:
        try:
            delay_seconds = parse_duration(delay)
        except ValueError as exc:
            raise fail(f"--delay: {exc}", 2) from None
    if idempotency_key is not None and len(payloads) > 1:
        raise fail("--idempotency-key applies to a single task; use it with --json", 2)
    opts = options(ctx)
    app = App("cli", resolve_bootstrap(opts.bootstrap_servers), topic_prefix=opts.topic_prefix)
    sender = sender_for(app, queue, task_type, schemas_dir or _default_schemas_dir(), max_attempts)
    try:  # encode everything first: a bad payload means nothing is sent
        encoded = [sender.encode(p) for p in payloads]
    except ValueError as exc:
        raise fail(str(exc), 2) from None
    app.ensure_queue(queue)
    ids: list[str] = []
    try:  # too large for Kafka: one line, and no retry can help (exit 2, as for a payload that does not encode)
        if len(encoded) == 1:
            ids.append(sender.send(encoded[0], key=key, priority=priority, idempotency_key=idempotency_key,
                                   delay=delay_seconds))
            app.flush()
            typer.echo(ids[0])
            return
        with Progress(TextColumn("enqueue"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      console=console, transient=True) as progress:
            bar = progress.add_task("enqueue", total=len(encoded))
            for value in encoded:
                ids.append(sender.send(value, key=key, priority=priority, delay=delay_seconds))
                progress.advance(bar)
            app.flush()
    except RecordTooLarge as exc:
        many = f" ({len(ids)} of {len(encoded)} task(s) were handed to Kafka; a refused one is not enqueued)"
        raise fail(f"{exc}{many if len(encoded) > 1 else ''}", 2) from None
    fmt = "avro" if sender.schema is not None else "json"
    console.print(f"enqueued {len(ids)} {task_type} task(s) to {queue} ({fmt}); first {ids[0]}, last {ids[-1]}",
                  highlight=False)
