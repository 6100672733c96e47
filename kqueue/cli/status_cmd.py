"""`kqueue status ID`: one task's status, asked of the status view (`kqueue api`)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import typer
from rich.table import Table

from kqueue.cli.common import console, fail
from kqueue.sdk.status_client import StatusUnavailable, TaskNotFound, api_url, fetch_status, wait_for


def _when(ms: int | None) -> str:
    return "" if ms is None else datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def status(
    task_id: str = typer.Argument(..., help="The task's id"),
    api: str | None = typer.Option(None, "--api", help="The API's URL [default: $KQUEUE_API_URL or "
                                                       "http://127.0.0.1:8080]"),
    wait: float | None = typer.Option(None, "--wait", min=0, help="Wait up to this many seconds for it to finish"),
    as_json: bool = typer.Option(False, "--json", help="Print the API's JSON"),
) -> None:
    """Show where a task is: queued, scheduled, processing, retrying, parked (behind
    its key's retry), completed, failed or cancelled."""
    base = api_url(api)
    try:
        found = wait_for(base, task_id, wait) if wait is not None else fetch_status(base, task_id)
    except TaskNotFound as exc:
        raise fail(str(exc)) from None
    except (StatusUnavailable, TimeoutError) as exc:
        raise fail(str(exc)) from None
    if as_json:
        console.print_json(json.dumps(found.as_json()))
        return
    table = Table(show_header=False, box=None)
    rows = [("task", found.task_id), ("status", found.status), ("queue", found.queue or ""),
            ("type", found.task_type or ""), ("attempts", f"{found.attempts}" + (
                f" of {found.max_attempts}" if found.max_attempts else "")),
            ("enqueued", _when(found.enqueued_at)), ("started", _when(found.started_at)),
            ("finished", _when(found.finished_at)), ("next attempt", _when(found.next_attempt_at)),
            ("tier", found.tier or ""), ("worker", found.worker or ""), ("error", found.error or ""),
            ("result", found.result or ""), ("cancel requested", "yes" if found.cancel_requested else "")]
    for name, value in rows:
        if value:
            table.add_row(name, value)
    console.print(table)
