"""The `kqueue` command."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import typer

from kqueue.cli import dev_cmd
from kqueue.cli.common import GlobalOptions, err_console, fail
from kqueue.cli.lifetime import die_with_parent
from kqueue.transport import security

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
    # No envvar= on these: kqueue reads KQUEUE_KAFKA_* itself (kqueue/transport/security.py), and no
    # variable's value can end up in --help.
    kafka_config: Path | None = typer.Option(
        None, "--kafka-config", metavar="FILE", dir_okay=False,
        help="librdkafka settings from a Java-style properties file (key=value lines, # comments), e.g. "
             "a client.properties with security.protocol, sasl.username, sasl.password; same as KQUEUE_KAFKA_CONFIG",
    ),
    kafka_options: list[str] = typer.Option(
        [], "--kafka-option", "-X", metavar="KEY=VALUE",
        help="Any librdkafka property, repeatable (like kcat -X), e.g. -X ssl.ca.location=/etc/kafka/ca.pem; "
             "or set KQUEUE_KAFKA_<PROPERTY> (KQUEUE_KAFKA_SASL_PASSWORD is sasl.password). Flags win over "
             "variables, variables over the file. Prefer a variable or --kafka-config for passwords: "
             "the command line is visible to others in ps.",
    ),
    security_protocol: str | None = typer.Option(
        None, "--security-protocol", metavar="PROTOCOL",
        help="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL (security.protocol, KQUEUE_KAFKA_SECURITY_PROTOCOL)",
    ),
    sasl_mechanism: str | None = typer.Option(
        None, "--sasl-mechanism", metavar="MECHANISM",
        help="PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER or GSSAPI (sasl.mechanism, "
             "KQUEUE_KAFKA_SASL_MECHANISM)",
    ),
    sasl_username: str | None = typer.Option(
        None, "--sasl-username", metavar="USER",
        help="SASL user (sasl.username, KQUEUE_KAFKA_SASL_USERNAME); its password: KQUEUE_KAFKA_SASL_PASSWORD "
             "or sasl.password in the --kafka-config file",
    ),
) -> None:
    try:
        flags = _kafka_flags(kafka_options, {"security.protocol": security_protocol,
                                             "sasl.mechanism": sasl_mechanism, "sasl.username": sasl_username})
        servers = flags.get("bootstrap.servers")
        if servers:
            source = ctx.get_parameter_source("bootstrap_servers")
            if source is not None and source.name == "COMMANDLINE" and bootstrap_servers != servers:
                raise security.KafkaSettingsError("give the bootstrap servers once: -b or -X bootstrap.servers")
            bootstrap_servers = servers  # a flag: it wins over KQUEUE_BOOTSTRAP_SERVERS
        config_file = kafka_config.expanduser().absolute() if kafka_config is not None else None
        # `kqueue dev ...` runs its own PLAINTEXT cluster, and help needs no Kafka: settings are checked
        # when they are about to be used, not here.
        check = ctx.invoked_subcommand != "dev" and "--help" not in sys.argv[1:]
        security.configure(flags, config_file=config_file, source=security.CLI_SOURCE, check=check)
    except security.KafkaSettingsError as exc:
        raise fail(str(exc), 2) from None
    _export_for_children(flags, config_file)
    ctx.obj = GlobalOptions(bootstrap_servers=bootstrap_servers, topic_prefix=topic_prefix)


def _kafka_flags(options: list[str], named: dict[str, str | None]) -> dict[str, str]:
    """-X KEY=VALUE pairs (the last of one key wins) plus the named flags; a named flag and -X of one
    property must agree."""
    flags: dict[str, str] = {}
    for position, option in enumerate(options, start=1):
        key, value = security.parse_option(option, position)
        flags[security.canonical(key)] = value
    for key, given in named.items():
        if given is None:
            continue
        if flags.get(key, given) != given:
            raise security.KafkaSettingsError(f"--{key.replace('.', '-')} and -X {key} disagree: give it once")
        flags[key] = given
    return flags


def _export_for_children(flags: dict[str, str], config_file: Path | None) -> None:
    """The flags as KQUEUE_KAFKA_* variables of this process, so the processes it starts (consume
    --processes, the demo's workers) use the same Kafka settings without repeating them."""
    for key, value in flags.items():
        os.environ[security.env_name(key)] = value
    if config_file is not None:
        os.environ[security.CONFIG_FILE_ENV] = str(config_file)


def _register_commands() -> None:
    # Imported here so `kqueue dev ...` works even while other modules are broken or heavy to load.
    from kqueue.cli import register

    register.add_all(app)


def _stop_quietly(signum: int, _frame: object) -> None:
    raise SystemExit(0)


def run() -> None:
    """Console-script entry: unexpected errors become one line unless KQUEUE_DEBUG is set."""
    if {"consume", "router", "api", "cron"} & set(sys.argv[1:]):
        # Until the worker takes over SIGTERM/SIGINT (to drain), a stop during start-up (loading the
        # app, creating topics) ends the process cleanly: exit 0, no traceback. For `kqueue api` it
        # is also what uvicorn raises again once it has shut down: the API then stops its status
        # view's reader on the way out instead of dying with SIGTERM's default action.
        signal.signal(signal.SIGTERM, _stop_quietly)
        signal.signal(signal.SIGINT, _stop_quietly)
    die_with_parent()  # a child of another kqueue command ends with it
    _register_commands()
    try:
        app(standalone_mode=True)
    except SystemExit:
        raise
    except KeyboardInterrupt:
        sys.exit(130)
    except security.KafkaSettingsError as exc:  # raised where a client is made: a usage error all the same
        err_console.print(f"[red]error:[/red] {security.scrub(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except Exception as exc:
        if os.environ.get("KQUEUE_DEBUG"):
            import traceback

            sys.stderr.write(security.scrub(traceback.format_exc()))  # the traceback, minus any secret
            sys.exit(1)
        err_console.print(f"[red]error:[/red] {type(exc).__name__}: {security.scrub(str(exc))}", highlight=False,
                          soft_wrap=True)
        sys.exit(1)
