"""Shared benchmark plumbing: a broker to run against, timing, and the result table/JSON."""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from kqueue.dev.cluster import DevCluster, port_open

console = Console()
RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class Row:
    name: str
    records: int
    seconds: float
    baseline: str = ""
    ratio: float | None = None

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0


@contextmanager
def broker() -> Iterator[str]:
    """$KQUEUE_BOOTSTRAP_SERVERS, else a fresh one-node cluster from the Kafka jars on a free port."""
    existing = os.environ.get("KQUEUE_BOOTSTRAP_SERVERS")
    if existing:
        yield existing
        return
    base = next(p for p in range(47092, 48000, 10) if not port_open(p) and not port_open(p + 100))
    with tempfile.TemporaryDirectory(prefix="kqueue-bench-") as tmp:
        cluster = DevCluster(Path(tmp))
        with console.status("starting a local Kafka for the benchmark"):
            state, _ = cluster.up(nodes=1, base_port=base)
        try:
            yield state.bootstrap_servers
        finally:
            cluster.down(purge=True)


class Stopwatch:
    def __init__(self) -> None:
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start


def report(title: str, rows: list[Row], name: str, extra: dict[str, object]) -> Path:
    """Print the table and write the JSON next to the other results."""
    table = Table(title=title)
    for column in ("run", "records", "seconds", "records/s", "ratio", "vs"):
        table.add_column(column, justify="left" if column in ("run", "vs") else "right")
    for row in rows:
        table.add_row(row.name, f"{row.records:,}", f"{row.seconds:.2f}", f"{row.rate:,.0f}",
                      f"{row.ratio:.2f}x" if row.ratio is not None else "", row.baseline)
    console.print(table)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{name}.json"
    payload = {
        "benchmark": name,
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "rows": [{**asdict(r), "rate": r.rate} for r in rows],
        **extra,
    }
    out.write_text(json.dumps(payload, indent=2))
    console.print(f"wrote {out}")
    return out
