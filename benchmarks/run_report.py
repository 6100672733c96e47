"""benchmarks/run.py's output: the rich table, the JSON and the PNG of every row's ratio to its baseline."""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from benchmarks.run_rows import Result


def value_text(row: Result) -> str:
    if row.value is None:
        return "-"
    return f"{row.value:,.1f}" if row.value < 100 else f"{row.value:,.0f}"


def table(rows: list[Result], title: str) -> Table:
    out = Table(title=title, show_lines=False)
    for column in ("section", "row", "value", "unit", "ratio", "baseline", "detail"):
        out.add_column(column, justify="right" if column in ("value", "ratio") else "left",
                       overflow="fold")
    section = ""
    for row in rows:
        out.add_row(row.section if row.section != section else "", row.name, value_text(row), row.unit,
                    f"{row.ratio:.2f}x" if row.ratio is not None else "", row.baseline, row.detail)
        section = row.section
    return out


def markdown(rows: list[Result]) -> str:
    """The same table for RESULTS.md."""
    lines = ["| section | row | value | unit | ratio | baseline | detail |", "|---|---|--:|---|--:|---|---|"]
    for row in rows:
        ratio = f"{row.ratio:.2f}x" if row.ratio is not None else ""
        lines.append(f"| {row.section} | {row.name} | {value_text(row)} | {row.unit} | {ratio} | {row.baseline} "
                     f"| {row.detail} |")
    return "\n".join(lines) + "\n"


def write_json(path: Path, rows: list[Result], meta: dict[str, Any]) -> None:
    path.write_text(json.dumps({
        "benchmark": "run",
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "loadavg_at_end": os.getloadavg()},
        **meta,
        "rows": [asdict(row) for row in rows],
    }, indent=2))


def write_png(path: Path, rows: list[Result], title: str) -> None:
    """One bar per measured row: its ratio to its baseline (baselines at 1.0), grouped by section."""
    import matplotlib

    matplotlib.use("Agg")  # no display here
    import matplotlib.pyplot as plt

    shown = [r for r in rows if r.value is not None and (r.ratio is not None or not r.baseline)]
    sections = list(dict.fromkeys(r.section for r in shown))
    colours = plt.get_cmap("tab10")
    fig, ax = plt.subplots(figsize=(11, 0.32 * len(shown) + 1.5))
    labels = [f"{r.section}: {r.name}" for r in shown]
    ratios = [r.ratio if r.ratio is not None else 1.0 for r in shown]
    floor = min(ratios, default=1.0) / 2  # bars start at the left edge of the log axis and end at the ratio
    ax.barh(range(len(shown)), [ratio - floor for ratio in ratios], left=floor,
            color=[colours(sections.index(r.section) % 10) for r in shown])
    for i, (r, ratio) in enumerate(zip(shown, ratios, strict=True)):
        ax.text(ratio, i, f" {ratio:.2f}x ({value_text(r)} {r.unit})", va="center", fontsize=7)
    ax.set_yticks(range(len(shown)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_xscale("log")  # ratios run from ~0.01 (a peer against the raw loop) to ~30 (I/O concurrency)
    ax.set_xlabel("ratio to the row's baseline in the same run, log scale (latency and memory: higher is worse)")
    ax.set_xlim(floor, max(ratios, default=1.0) * 8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_all(out_dir: Path, rows: list[Result], meta: dict[str, Any], title: str, console: Console,
              page: Path | None = None) -> None:
    """Table to the console; run.json, run.png, run.md to `out_dir`; and RESULTS.md to `page` if given."""
    Console(width=max(console.width, 200)).print(table(rows, title))  # wide enough for the detail column
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "run.json", rows, meta)
    write_png(out_dir / "run.png", rows, title)
    (out_dir / "run.md").write_text(markdown(rows))
    console.print(f"wrote {out_dir / 'run.json'}, {out_dir / 'run.png'} and {out_dir / 'run.md'}")
    if page is not None:
        page.write_text(results_page(json.loads((out_dir / "run.json").read_text()), markdown(rows)))
        console.print(f"wrote {page}")


def results_page(report: dict[str, Any], table_md: str) -> str:
    """benchmarks/RESULTS.md from a full run's JSON and its markdown table."""
    machine = report["machine"]
    load = ", ".join(f"{x:.1f}" for x in machine["loadavg_at_end"])
    return f"""# Benchmark results

The latest full run of `benchmarks/run.py`: every row measured in one run, on one broker and one
machine, with its ratio to the baseline measured in the same run. Rerun with

```bash
python benchmarks/run.py        # about {report['seconds'] / 60:.0f} minutes here; --quick for a smoke run
```

Run at {report['at']} on {machine['cpus']} CPUs, Python {machine['python']}, {machine['platform']}, against
an embedded one-node Kafka from the project's jars (the chaos row starts its own). Load average at the
end: {load} (the last rows run a dozen processes). The ratios (both sides measured minutes apart on
the same box) are the figures to read: this box's speed drifts by tens of percent within minutes.

Peers run in their own venvs (`~/.cache/kqueue/bench-peers`), as subprocesses, with JSON payloads;
kqueue's rows use Avro (schemas/send_email.avsc). Celery and Dramatiq use a local `redis-server`
with persistence off. Latency and memory ratios: higher is worse.

How to read some rows:
- drain: one worker in the benchmark's own process reading a pre-filled queue, medians of three
  interleaved rounds for kqueue and the raw loop (one run each for peers, 30,000 records). "leanest"
  is `kqueue consume` with every optional output off and at-least-once settlement.
- latency: the load levels are fractions of the sync drain rate above, but here a producer process
  enqueues at that rate on the same two cores while the worker runs, so the worker gets less CPU
  than when it drained alone; high percentiles at 50-75 % most likely mean this box has no headroom
  at that rate (not checked further here). `benchmarks/latency.py --max-rate N` probes one level.
- processes: no-op tasks on a machine that also runs the broker: with two cores, a second process
  shares them with the broker and the benchmark itself.
- worker RSS: `kqueue consume` starts --concurrency handler threads up front, so an idle worker's
  memory grows with --concurrency (the middle row), before any task is in flight.

![ratios](results/run.png)

{table_md}"""
