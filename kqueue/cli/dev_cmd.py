"""`kqueue dev`: a real local Kafka (KRaft) from Apache Kafka's jars."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.table import Table

from kqueue.cli.common import console, fail
from kqueue.dev.cluster import ClusterError, DevCluster
from kqueue.dev.jars import ToolMissing
from kqueue.dev.paths import KAFKA_VERSION

app = typer.Typer(help="Run a real local Apache Kafka (KRaft) built from Apache Kafka's own jars.",
                  no_args_is_help=True)

DataDirOption = typer.Option(
    None, "--data-dir", help="Cluster data folder [default: ~/.cache/kqueue/dev-cluster]"
)


@app.command()
def up(
    nodes: int = typer.Option(1, "--nodes", help="1, or 3 for a replicated cluster (RF 3, min ISR 2)"),
    base_port: int = typer.Option(9092, "--base-port", help="Node i serves clients on base+i"),
    data_dir: Path | None = DataDirOption,
) -> None:
    """Start the local cluster (a running one is reused) and print its bootstrap servers."""
    if nodes not in (1, 3):
        raise fail("--nodes must be 1 or 3")
    cluster = DevCluster(data_dir)
    started = time.monotonic()
    try:
        with console.status(f"Starting Apache Kafka {KAFKA_VERSION} ({nodes} node(s))") as status:
            state, reused = cluster.up(nodes, base_port, progress=lambda m: status.update(m))
    except (ClusterError, ToolMissing) as exc:
        raise fail(str(exc)) from None
    took = time.monotonic() - started
    verb = "already running" if reused else f"started in {took:.1f}s"
    console.print(f"Kafka {state.version}, {state.nodes} node(s), {verb}", highlight=False)
    console.print(f"bootstrap servers: [bold]{state.bootstrap_servers}[/bold]")
    console.print(f"export KQUEUE_BOOTSTRAP_SERVERS={state.bootstrap_servers}", highlight=False)


@app.command()
def fetch() -> None:
    """Download Apache Kafka's broker jars from Maven Central into the cache (once)."""
    from kqueue.dev.jars import ensure_kafka_jars
    from kqueue.dev.paths import jars_dir

    try:
        with console.status(f"Fetching Apache Kafka {KAFKA_VERSION} jars with Maven") as status:
            libs = ensure_kafka_jars(KAFKA_VERSION, on_progress=lambda m: status.update(m))
    except ToolMissing as exc:
        raise fail(str(exc)) from None
    console.print(f"Apache Kafka {KAFKA_VERSION}: {len(list(libs.glob('*.jar')))} jars in {jars_dir()}",
                  highlight=False)


@app.command()
def status(data_dir: Path | None = DataDirOption) -> None:
    """Show each node: pid, port, whether it answers."""
    cluster = DevCluster(data_dir)
    nodes = cluster.status()
    if not nodes:
        raise fail(f"no dev cluster in {cluster.data_dir}; start one with `kqueue dev up`")
    table = Table(title=f"dev cluster ({cluster.data_dir})")
    for column in ("node", "pid", "port", "process", "answers"):
        table.add_column(column)
    for n in nodes:
        table.add_row(str(n.node_id), str(n.pid or "-"), str(n.port), "running" if n.alive else "stopped",
                      "yes" if n.answering else "no")
    console.print(table)
    state = cluster.load_state()
    if state is not None and all(n.alive for n in nodes):
        console.print(f"bootstrap servers: {state.bootstrap_servers}", highlight=False)
    else:
        raise typer.Exit(3)


@app.command()
def down(
    data_dir: Path | None = DataDirOption,
    purge: bool = typer.Option(False, "--purge", help="Also delete the cluster's data"),
) -> None:
    """Stop the nodes `kqueue dev up` started (and only those)."""
    cluster = DevCluster(data_dir)
    stopped = cluster.down(purge=purge)
    console.print(f"stopped {len(stopped)} node(s)" + (", data deleted" if purge else ""))


@app.command()
def logs(
    node: int = typer.Option(1, "--node", help="Which node's log"),
    lines: int = typer.Option(50, "--lines", "-n", help="How many lines from the end"),
    data_dir: Path | None = DataDirOption,
) -> None:
    """Print the end of a node's broker log."""
    cluster = DevCluster(data_dir)
    text = cluster.tail_log(node, lines)
    if not text:
        raise fail(f"no log for node {node} in {cluster.data_dir}")
    typer.echo(text)
