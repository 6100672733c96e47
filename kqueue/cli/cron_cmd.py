"""`kqueue cron list|run`: an app's schedules, and a scheduler on its own."""

from __future__ import annotations

import json
import signal
import time
from datetime import datetime
from types import FrameType

import typer
from rich import box
from rich.table import Table

from kqueue.cli.common import GlobalOptions, console, fail, load_cli_app, options, setup_logging
from kqueue.core.errors import DeliveryError
from kqueue.cron.listing import ScheduleRow, live_schedulers, read_cron_log, schedule_rows
from kqueue.cron.log import CronLog
from kqueue.cron.schedule import zone
from kqueue.sdk.app import App
from kqueue.transport.topic_reader import TopicReadError

app = typer.Typer(help="Cron schedules: list them, or run a scheduler alone (`kqueue consume` runs one too).",
                  no_args_is_help=True)


def load_scheduled_app(app_spec: str, opts: GlobalOptions) -> App:
    """The app, with a bad schedule (refused by @app.cron at import) as a one-line usage error."""
    try:
        loaded = load_cli_app(app_spec, opts)
    except (ValueError, TypeError) as exc:
        raise fail(f"{app_spec}: {exc}", 2) from None
    if not loaded.cron_entries:
        raise fail(f"{app_spec} has no cron schedules (add @app.cron(...) above an @app.task)", 2)
    return loaded


@app.command("list")
def list_schedules(
    ctx: typer.Context,
    app_spec: str = typer.Option(..., "--app", "-a", help="Your App, as package.module:attribute"),
    as_json: bool = typer.Option(False, "--json", help="One JSON object instead of the table"),
) -> None:
    """Each schedule with its next fire time, its last fired tick and the schedulers alive."""
    loaded = load_scheduled_app(app_spec, options(ctx))
    now = time.time()
    log: CronLog | None
    note = ""
    try:
        log = read_cron_log(loaded)
    except TopicReadError as exc:
        log, note = None, f"last fired ticks unknown: {exc}"
    rows = schedule_rows(loaded, now, log)
    if as_json:
        print(json.dumps(_as_json(rows, log, now)))
        return
    table = Table(title=f"cron schedules of {loaded.name}", box=box.SIMPLE_HEAD)
    for column in ("schedule", "task", "cron", "zone", "catch up"):
        table.add_column(column)
    for column in ("next fire", "last fired"):
        table.add_column(column, no_wrap=True)
    for row in rows:
        next_fire = ("-" if row.next_fire is None
                     else f"{_when(row.next_fire, row.tz, now)} (in {_span(row.next_fire - now)})")
        last_fired = "never" if row.last_fired is None else _when(row.last_fired, row.tz, now)
        table.add_row(row.name, f"{row.queue}/{row.task}", row.expression, row.tz, "yes" if row.catch_up else "no",
                      next_fire, last_fired)
    console.print(table)
    if log is not None:
        alive = live_schedulers(log, int(now * 1000))
        leader = next((b for b in alive if b.leader), None)
        lead = f"; leader pid {leader.pid} on {leader.host}" if leader is not None else "; none leads"
        console.print(f"schedulers alive: {len(alive)}{lead if alive else ''}", highlight=False)
    if note:
        console.print(note, highlight=False)


def _when(epoch: int, tz: str, now: float) -> str:
    """A tick as wall time in its schedule's zone (the zone column names it); the date only if not today."""
    when, today = datetime.fromtimestamp(epoch, zone(tz)), datetime.fromtimestamp(now, zone(tz))
    return when.strftime("%H:%M:%S" if when.date() == today.date() else "%Y-%m-%d %H:%M:%S")


def _span(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{max(0.0, seconds):.0f}s"


def _as_json(rows: list[ScheduleRow], log: CronLog | None, now: float) -> dict[str, object]:
    alive = live_schedulers(log, int(now * 1000)) if log is not None else []
    return {
        "schedules": [{"name": r.name, "queue": r.queue, "task": r.task, "cron": r.expression, "tz": r.tz,
                       "catch_up": r.catch_up, "next_fire": r.next_fire, "last_fired": r.last_fired} for r in rows],
        "schedulers": [{"member": b.member, "pid": b.pid, "host": b.host, "leader": b.leader,
                        "since_ms": b.since_ms} for b in alive],
        "read": log is not None,
    }


@app.command("run")
def run(
    ctx: typer.Context,
    app_spec: str = typer.Option(..., "--app", "-a", help="Your App, as package.module:attribute"),
    log_level: str = typer.Option("INFO", "--log-level", envvar="KQUEUE_LOG_LEVEL",
                                  help="DEBUG (a line per fired tick), INFO, WARNING or ERROR"),
    log_format: str = typer.Option("text", "--log-format", envvar="KQUEUE_LOG_FORMAT", help="text or json"),
) -> None:
    """Run only the scheduler: any number may run, one leads, each tick is enqueued exactly once."""
    from kqueue.cron.scheduler import CronScheduler

    setup_logging(log_level, log_format)
    loaded = load_scheduled_app(app_spec, options(ctx))
    scheduler = CronScheduler(loaded)

    def stop(_signum: int, _frame: FrameType | None) -> None:
        scheduler.request_stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    console.print(f"cron scheduler for {len(loaded.cron_entries)} schedule(s) of {loaded.name} "
                  f"from {loaded.bootstrap_servers}", highlight=False)
    try:
        scheduler.run()
    except DeliveryError as exc:
        raise fail(str(exc)) from None
    console.print(f"stopped: {scheduler.fired} tick(s) fired here", highlight=False)
