"""`kqueue queue`: create, list and describe queues (their topics); pause, resume and rate-limit them."""

from __future__ import annotations

import typer
from rich.table import Table

from kqueue.cli.common import GlobalOptions, console, fail, options, resolve_bootstrap
from kqueue.core.errors import DeliveryError
from kqueue.core.names import queue_of_topic
from kqueue.core.topology import queue_topic_specs, queue_topics
from kqueue.transport.admin import broker_count, ensure_topics, existing_topics, make_admin
from kqueue.transport.inspect import topic_depths

app = typer.Typer(help="Create, list, describe, pause, resume and rate-limit queues.", no_args_is_help=True)


@app.command()
def create(
    ctx: typer.Context,
    queue: str = typer.Argument(..., help="Queue name"),
    partitions: int = typer.Option(6, "--partitions", min=1, help="Partitions of every topic of the queue"),
    replication: int | None = typer.Option(None, "--replication", min=1, help="[default: min(3, brokers)]"),
) -> None:
    """Create the queue's topics (main, priority lanes, DLQ); existing ones are left alone."""
    opts = options(ctx)
    admin = make_admin(resolve_bootstrap(opts.bootstrap_servers))
    brokers = broker_count(admin)
    if replication is not None and replication > brokers:
        raise fail(f"--replication {replication} exceeds the {brokers} broker(s) of this cluster", 2)
    specs = queue_topic_specs(queue, partitions, brokers, opts.topic_prefix, replication)
    created = ensure_topics(admin, specs)
    console.print(f"queue {queue}: created {len(created)} topic(s), {len(specs) - len(created)} already existed",
                  highlight=False)


@app.command("list")
def list_queues(ctx: typer.Context) -> None:
    """Every queue on the cluster with its partitions and stored records."""
    opts = options(ctx)
    bootstrap = resolve_bootstrap(opts.bootstrap_servers)
    topics = existing_topics(make_admin(bootstrap))
    # A queue is a main topic with its DLQ beside it (both are created together).
    queues = sorted(queue_of_topic(t, opts.topic_prefix) for t in topics
                    if f"{t}.dlq" in topics and t.startswith(opts.topic_prefix))
    table = Table(title="queues")
    for column in ("queue", "partitions", "records", "dlq records"):
        table.add_column(column, justify="right" if column != "queue" else "left")
    per_queue = {queue: [t for t in queue_topics(queue, opts.topic_prefix) if t in topics] for queue in queues}
    everything = topic_depths(bootstrap, [t for names in per_queue.values() for t in names])  # one client for all
    for queue in queues:
        names = per_queue[queue]
        depths = [d for d in everything if d.topic in names]
        dlq = sum(d.records for d in depths if d.topic.endswith(".dlq"))
        main = sum(d.records for d in depths if not d.topic.endswith(".dlq"))
        table.add_row(queue, str(topics.get(names[0], 0)) if names else "-", str(main), str(dlq))
    console.print(table)


@app.command()
def describe(
    ctx: typer.Context,
    queue: str = typer.Argument(..., help="Queue name"),
    group: str | None = typer.Option(None, "--group", "-g", help="Show this consumer group's lag"),
) -> None:
    """Each topic of the queue: partitions, records stored, and a group's lag."""
    opts = options(ctx)
    bootstrap = resolve_bootstrap(opts.bootstrap_servers)
    topics = existing_topics(make_admin(bootstrap))
    names = [t for t in queue_topics(queue, opts.topic_prefix) if t in topics]
    if not names:
        raise fail(f"queue {queue!r} does not exist; create it with `kqueue queue create {queue}`")
    depths = topic_depths(bootstrap, names, group)
    table = Table(title=f"queue {queue}" + (f" (group {group})" if group else ""))
    columns = ["topic", "partitions", "records"] + (["lag"] if group else [])
    for column in columns:
        table.add_column(column, justify="left" if column == "topic" else "right")
    for topic in names:
        mine = [d for d in depths if d.topic == topic]
        row = [topic, str(len(mine)), str(sum(d.records for d in mine))]
        if group:
            row.append("-" if topic.endswith(".dlq") else str(sum(d.lag for d in mine)))
        table.add_row(*row)
    console.print(table)


@app.command()
def pause(
    ctx: typer.Context,
    queue: str = typer.Argument(..., help="Queue name"),
    reason: str | None = typer.Option(None, "--reason", help="Why (shown by `kqueue stats` and the API)"),
) -> None:
    """Stop every worker of the queue from starting its tasks (running ones finish), until `resume`;
    it holds across worker restarts. Enqueueing still works. Exit 2 for an unknown queue."""
    _change(options(ctx), queue, True, reason)


@app.command()
def resume(ctx: typer.Context, queue: str = typer.Argument(..., help="Queue name")) -> None:
    """Let the queue's workers start its tasks again. Exit 2 for an unknown queue."""
    _change(options(ctx), queue, False, None)


@app.command()
def limit(
    ctx: typer.Context,
    queue: str = typer.Argument(..., help="Queue name"),
    rate: str | None = typer.Argument(None, help="N/s, N/m or N/h for all task types together; 'off' clears"),
    clear: bool = typer.Option(False, "--clear", help="Remove the queue-wide limit"),
) -> None:
    """Limit how fast the queue's workers together start its tasks, all task types counted together
    (a type's own rate_limit still holds too). Workers retune within ~2 s; it holds across restarts
    and for workers started later, until `--clear`. Exit 2 for a bad rate or an unknown queue."""
    from kqueue.control.limits import parse_queue_rate
    from kqueue.sdk.app import App

    if clear == (rate is not None):
        raise fail("give a rate (e.g. `kqueue queue limit Q 500/s`) or --clear, not both or neither", 2)
    try:
        parse_queue_rate(rate)
    except ValueError as exc:
        raise fail(str(exc), 2) from None
    opts = options(ctx)
    client = App("kqueue-cli", resolve_bootstrap(opts.bootstrap_servers), topic_prefix=opts.topic_prefix)
    try:
        state = client.limit(queue, rate)
    except ValueError as exc:
        raise fail(str(exc), 2) from None
    except DeliveryError as exc:
        raise fail(str(exc)) from None
    console.print(str(state), highlight=False, soft_wrap=True)


def _change(opts: GlobalOptions, queue: str, pause: bool, reason: str | None) -> None:
    from kqueue.sdk.app import App

    client = App("kqueue-cli", resolve_bootstrap(opts.bootstrap_servers), topic_prefix=opts.topic_prefix)
    try:
        state = client.pause(queue, reason) if pause else client.resume(queue)
    except ValueError as exc:
        raise fail(str(exc), 2) from None
    except DeliveryError as exc:
        raise fail(str(exc)) from None
    console.print(str(state), highlight=False, soft_wrap=True)
