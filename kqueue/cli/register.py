"""Attach every command group to the root typer app."""

from __future__ import annotations

import typer

from kqueue.cli import (
    api_cmd,
    cancel_cmd,
    consume_cmd,
    cron_cmd,
    demo_cmd,
    dlq_cmd,
    produce_cmd,
    queue_cmd,
    router_cmd,
    stats_cmd,
    status_cmd,
)


def add_all(app: typer.Typer) -> None:
    app.command("produce")(produce_cmd.produce)
    app.command("consume")(consume_cmd.consume)
    app.command("demo")(demo_cmd.demo)
    app.command("router")(router_cmd.router)
    app.command("stats")(stats_cmd.stats)
    app.command("cancel")(cancel_cmd.cancel)
    app.command("status")(status_cmd.status)
    app.command("api")(api_cmd.api)
    app.add_typer(queue_cmd.app, name="queue")
    app.add_typer(dlq_cmd.app, name="dlq")
    app.add_typer(cron_cmd.app, name="cron")
