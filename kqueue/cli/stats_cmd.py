"""`kqueue stats`: a queue's depth, DLQ and rates as a table, live with --watch, or JSON."""

from __future__ import annotations

import json
import time

import typer
from rich.console import Group
from rich.live import Live
from rich.table import Table

from kqueue.cli.common import console, fail, options, resolve_bootstrap
from kqueue.control.pauses import since_text
from kqueue.control.stats import QueueNotFound, QueueStats, read_queue_stats, with_rates
from kqueue.transport.admin import KafkaUnavailable, unreachable
from kqueue.transport.topic_reader import TopicReadError


def stats(
    ctx: typer.Context,
    queue: str = typer.Argument(..., help="Queue name"),
    group: str = typer.Option(..., "--group", "-g", help="The consumer group whose lag to show"),
    watch: bool = typer.Option(False, "--watch", "-w", help="Refresh live (with rates) until Ctrl-C"),
    interval: float = typer.Option(2.0, "--interval", min=0.2, help="Seconds between refreshes with --watch"),
    as_json: bool = typer.Option(False, "--json", help="One JSON object (per refresh with --watch)"),
) -> None:
    """Depth (the group's lag) per lane and delay tier, DLQ size, members, whether the queue is paused
    (since when, why), its queue-wide rate limit, and with --watch the rates."""
    opts = options(ctx)
    bootstrap = resolve_bootstrap(opts.bootstrap_servers)

    def read(previous: QueueStats | None) -> QueueStats:
        try:
            return with_rates(previous, read_queue_stats(bootstrap, queue, group, opts.topic_prefix,
                                                         previous=previous, with_pause=True))
        except (QueueNotFound, TopicReadError) as exc:
            raise fail(str(exc)) from None
        except KafkaUnavailable as exc:
            raise fail(unreachable(bootstrap, 10, exc, "to read the queue's offsets")) from None

    current = read(None)
    if not watch:
        _emit(current, as_json)
        return
    try:
        if as_json:
            while True:
                _emit(current, True)
                time.sleep(interval)
                current = read(current)
        with Live(render(current), console=console, auto_refresh=False) as live:
            while True:
                time.sleep(interval)
                current = read(current)
                live.update(render(current), refresh=True)
    except KeyboardInterrupt:
        pass


def _emit(current: QueueStats, as_json: bool) -> None:
    if as_json:
        print(json.dumps(current.as_json()), flush=True)
    else:
        console.print(render(current))


def render(current: QueueStats) -> Group:
    table = Table(title=f"queue {current.queue}, group {current.group}")
    for column in ("topic", "lane", "tier", "partitions", "stored", "lag"):
        table.add_column(column, justify="left" if column in ("topic", "lane", "tier") else "right")
    for lane in current.lanes:
        table.add_row(lane.topic, lane.lane or "-", lane.tier or "-", str(lane.partitions), str(lane.records),
                      str(lane.lag))
    summary = Table.grid(padding=(0, 2))
    summary.add_row("lag", str(current.lag))
    summary.add_row("dead letters stored", str(current.dlq_records))
    summary.add_row("group members", str(current.members))
    paused = current.paused
    summary.add_row("paused", "no" if paused is None else
                    f"since {since_text(paused.since)}" + (f": {paused.reason}" if paused.reason else ""))
    limit = current.limit
    summary.add_row("rate limit", "none (queue-wide)" if limit is None else
                    f"{limit.rate} for all task types together, since {since_text(limit.since)}")
    for name, value in current.rates.items():
        summary.add_row(name.replace("_per_s", " per second").replace("_", " "), f"{value:g}")
    return Group(table, summary)
