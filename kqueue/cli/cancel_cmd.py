"""`kqueue cancel ID`: ask workers to settle a task as cancelled when its turn comes.

The status view (`kqueue api`) is asked first: a finished task is not cancelled again, and an id it
does not know is said to be unknown (exit 1; the cancel is sent anyway, in case the task is on its
way). When the view cannot be asked, the cancel is sent and the line says it was not checked.
"""

from __future__ import annotations

import typer

from kqueue.cli.common import console, fail, options, resolve_bootstrap
from kqueue.core.errors import DeliveryError
from kqueue.sdk.app import App


def cancel(
    ctx: typer.Context,
    task_id: str = typer.Argument(..., help="The task's id"),
    api: str | None = typer.Option(None, "--api", help="The status API's URL, asked whether the task is "
                                                       "unfinished (default: $KQUEUE_API_URL, else "
                                                       "http://127.0.0.1:8080)"),
) -> None:
    """Cancel a task that has not started (queued, scheduled or waiting to retry); a running one sees
    ctx.cancelled. Exit 1 when the task is unknown or already completed or failed."""
    opts = options(ctx)
    app = App("kqueue-cli", resolve_bootstrap(opts.bootstrap_servers), topic_prefix=opts.topic_prefix, api_url=api)
    try:
        result = app.cancel(task_id)
    except DeliveryError as exc:
        raise fail(str(exc)) from None
    if not result.ok:
        raise fail(str(result))
    console.print(str(result), highlight=False, soft_wrap=True)
