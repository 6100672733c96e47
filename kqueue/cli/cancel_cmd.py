"""`kqueue cancel ID`: ask workers to settle a task as cancelled when its turn comes."""

from __future__ import annotations

import typer

from kqueue.cli.common import console, fail, options, resolve_bootstrap
from kqueue.core.errors import DeliveryError
from kqueue.sdk.app import App


def cancel(ctx: typer.Context, task_id: str = typer.Argument(..., help="The task's id")) -> None:
    """Cancel a task that has not started (queued, scheduled or waiting to retry); a running one finishes."""
    opts = options(ctx)
    app = App("kqueue-cli", resolve_bootstrap(opts.bootstrap_servers), topic_prefix=opts.topic_prefix)
    try:
        app.cancel(task_id)
    except DeliveryError as exc:
        raise fail(str(exc)) from None
    console.print(f"cancel requested for {task_id}: workers settle it as cancelled when its turn comes",
                  highlight=False)
