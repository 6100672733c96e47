"""On a machine without Chromium and chromedriver (the README names them), the dashboard test says so
in one line that names the Debian packages, before it starts a broker: no traceback to read."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_missing_chromium_fails_the_dashboard_test_in_one_line_naming_the_packages() -> None:
    env = {**os.environ, "KQUEUE_CHROMIUM": "/nonexistent/chromium",
           "KQUEUE_CHROMEDRIVER": "/nonexistent/chromedriver",
           # Nothing listens here: had the test gone on to Kafka, it would hang and time out.
           "KQUEUE_BOOTSTRAP_SERVERS": "127.0.0.1:9",
           "COLUMNS": "2000"}  # pytest's summary lines whole (it cuts them at the terminal's width)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "0", "-q", "-p", "no:cacheprovider", "--timeout", "60",
         "tests/integration/test_dashboard.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
        check=False)
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "Traceback" not in out and "AssertionError" not in out, out
    errors = [line for line in out.splitlines() if line.startswith("ERROR ")]
    assert errors, out
    for line in errors:  # each test: one line, the packages and the command that installs them
        assert "apt-get install chromium chromium-driver" in line, line
    # The fixture's failure, not the test body's: every dashboard test errors at setup, none ran.
    assert " passed" not in out and " failed" not in out, out


def test_the_readme_names_every_package_the_suite_needs() -> None:
    readme = (ROOT / "README.md").read_text()
    needs = readme[readme.index("Needs Python"):].split("\n\n")[0]
    assert "apt-get install openjdk-17-jdk-headless maven chromium chromium-driver" in needs
