"""Shared CLI plumbing: the global options, bootstrap resolution and one-line errors."""

from __future__ import annotations

from dataclasses import dataclass

import typer
from rich.console import Console

from kqueue.transport.config import resolve_bootstrap

__all__ = ["GlobalOptions", "console", "err_console", "fail", "options", "resolve_bootstrap", "setup_logging"]

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
    """Print one line to stderr and return an Exit to raise."""
    err_console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def setup_logging(level_name: str) -> None:
    """Configure logging from a --log-level value, or fail with one line."""
    import logging

    level = logging.getLevelName(level_name.upper())
    if not isinstance(level, int):
        raise fail(f"--log-level must be DEBUG, INFO, WARNING or ERROR, not {level_name!r}", 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s")
