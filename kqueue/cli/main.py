"""The `kqueue` command."""

from __future__ import annotations

import os
import signal
import sys

import typer

from kqueue.cli import dev_cmd
from kqueue.cli.common import GlobalOptions, err_console

app = typer.Typer(help="kqueue: a distributed task queue on Apache Kafka.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
app.add_typer(dev_cmd.app, name="dev")


@app.callback()
def main(
    ctx: typer.Context,
    bootstrap_servers: str | None = typer.Option(
        None, "--bootstrap-servers", "-b", envvar="KQUEUE_BOOTSTRAP_SERVERS",
        help="Kafka bootstrap servers [default: localhost:9092]",
    ),
    topic_prefix: str = typer.Option("", "--topic-prefix", envvar="KQUEUE_TOPIC_PREFIX",
                                     help="Prefix for every kqueue topic"),
) -> None:
    ctx.obj = GlobalOptions(bootstrap_servers=bootstrap_servers, topic_prefix=topic_prefix)


def _register_commands() -> None:
    # Imported here so `kqueue dev ...` works even while other modules are broken or heavy to load.
    from kqueue.cli import register

    register.add_all(app)


def _stop_quietly(signum: int, _frame: object) -> None:
    raise SystemExit(0)


def run() -> None:
    """Console-script entry: unexpected errors become one line unless KQUEUE_DEBUG is set."""
    if {"consume", "router"} & set(sys.argv[1:]):
        # Until the worker takes over SIGTERM/SIGINT (to drain), a stop during start-up (loading the
        # app, creating topics) ends the process cleanly: exit 0, no traceback.
        signal.signal(signal.SIGTERM, _stop_quietly)
        signal.signal(signal.SIGINT, _stop_quietly)
    _register_commands()
    try:
        app(standalone_mode=True)
    except SystemExit:
        raise
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        if os.environ.get("KQUEUE_DEBUG"):
            raise
        err_console.print(f"[red]error:[/red] {type(exc).__name__}: {exc}", highlight=False, soft_wrap=True)
        sys.exit(1)
