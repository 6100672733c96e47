"""Shared CLI plumbing: the global options, bootstrap resolution and one-line errors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from kqueue.transport.config import resolve_bootstrap

if TYPE_CHECKING:
    from kqueue.sdk.app import App

__all__ = ["GlobalOptions", "console", "err_console", "fail", "load_cli_app", "options", "resolve_bootstrap",
           "setup_logging"]

console = Console()
err_console = Console(stderr=True)


@dataclass
class GlobalOptions:
    bootstrap_servers: str | None = None
    topic_prefix: str = ""


def options(ctx: typer.Context) -> GlobalOptions:
    obj = ctx.find_root().obj
    return obj if isinstance(obj, GlobalOptions) else GlobalOptions()


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print one line to stderr and return an Exit to raise (no configured secret value is printed)."""
    from kqueue.transport.security import scrub

    err_console.print(f"[red]error:[/red] {scrub(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def load_cli_app(app_spec: str, opts: GlobalOptions) -> App:
    """The user's App from --app, with the global --bootstrap-servers/--topic-prefix applied; a
    spec that does not load is a one-line usage error."""
    from kqueue.core.errors import KqueueError
    from kqueue.sdk.loader import load_app

    try:
        app = load_app(app_spec)
    except KqueueError as exc:
        raise fail(str(exc), 2) from None
    if opts.bootstrap_servers:
        app.bootstrap_servers = opts.bootstrap_servers
    if opts.topic_prefix:
        app.topic_prefix = opts.topic_prefix
    return app


def setup_logging(level_name: str, log_format: str = "text") -> None:
    """Configure logging from --log-level and --log-format values, or fail with one line."""
    import logging

    from kqueue.observe.logs import LOG_FORMATS, formatter

    level = logging.getLevelName(level_name.upper())
    if not isinstance(level, int):
        raise fail(f"--log-level must be DEBUG, INFO, WARNING or ERROR, not {level_name!r}", 2)
    if log_format not in LOG_FORMATS:
        raise fail(f"--log-format must be text or json, not {log_format!r}", 2)
    handler = logging.StreamHandler()
    handler.setFormatter(formatter(log_format))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    from kqueue.transport.security import install_log_redaction

    install_log_redaction()  # secret values (SASL passwords, ...) never reach a log line
