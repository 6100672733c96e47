"""`python benchmarks/run.py --quick` against the session broker: the suite runs end to end, so it
never rots. Asserts that every row produced a number (not how fast it was) and that the JSON and
the PNG were written; peers are left out (--no-peers) so the test installs nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SECTIONS = {"drain", "enqueue", "latency", "I/O-bound (20 ms sleep)", "processes",
            "group, 12 partitions, 20 ms tasks", "failures", "worker RSS"}


@pytest.mark.slow
@pytest.mark.timeout(290)
def test_quick_suite_measures_every_row(bootstrap: str, tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "benchmarks/run.py", "--quick", "--no-peers", "--out", str(tmp_path)],
                          cwd=ROOT, env={**os.environ, "KQUEUE_BOOTSTRAP_SERVERS": bootstrap},
                          capture_output=True, text=True, timeout=270)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "run.json").read_text())
    rows = report["rows"]
    assert {row["section"] for row in rows} == SECTIONS
    peers = [row for row in rows if row["detail"] == "skipped (--no-peers)"]
    assert len(peers) == 8  # FastStream x2, Celery, Dramatiq: drain and enqueue each
    measured = [row for row in rows if row not in peers]
    missing = [(row["section"], row["name"], row["detail"]) for row in measured
               if not isinstance(row["value"], int | float) or row["value"] <= 0]
    assert not missing
    assert all(row["ratio"] is not None for row in measured if row["baseline"])
    assert (tmp_path / "run.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert report["quick"] is True
