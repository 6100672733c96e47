"""The demo's `kqueue api`: the dashboard and the status view while the demo runs."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

from kqueue.cli.common import console
from kqueue.cli.lifetime import ChildProcesses, wait_until_stopped


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class DemoApi:
    """`kqueue api` for the demo's app, on a free port, while the demo runs (and after, if asked)."""

    def __init__(self, children: ChildProcesses, bootstrap: str, db: Path) -> None:
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}"
        self._children = children
        self._proc = children.start(
            [sys.executable, "-m", "kqueue", "api", "--app", "kqueue.demo.tasks:app", "--port", str(port),
             "--db", str(db)], {**os.environ, "KQUEUE_BOOTSTRAP_SERVERS": bootstrap, "KQUEUE_API_TOKEN": ""},
            stop_within=20.0, stdout=subprocess.DEVNULL)

    def _get(self, path: str) -> tuple[int, Any]:
        try:
            with urllib.request.urlopen(f"{self.url}{path}", timeout=10) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as exc:
            return exc.code, None
        except (urllib.error.URLError, OSError):
            return 0, None

    def counts(self, kinds: dict[str, str], completed: int, failed: int, timeout: float = 15.0) -> dict[str, int]:
        """Each task's status as the view reports it, counted (waiting a moment for it to agree)."""
        deadline = time.monotonic() + timeout
        while True:
            found: Counter[str] = Counter()
            for task_id in kinds:
                code, body = self._get(f"/api/v1/tasks/{task_id}")
                found[body["status"] if code == 200 and body else "unknown"] += 1
            if (found["completed"], found["failed"]) == (completed, failed) or time.monotonic() > deadline:
                return dict(found)
            time.sleep(0.5)

    def serve_until_interrupted(self) -> None:
        console.print(f"the dashboard stays up at {self.url}/ — Ctrl-C to stop", highlight=False)
        wait_until_stopped(self._proc)

    def stop(self) -> None:
        self._children.stop(self._proc)
