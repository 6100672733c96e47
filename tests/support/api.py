"""Run `kqueue api` as a user would (a subprocess) and talk to it over HTTP."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


class ApiProcess:
    def __init__(self, bootstrap: str, queue: str, db: Path, app: str = "tests.apps.lifecycle:app",
                 token: str | None = None, extra: tuple[str, ...] = ()) -> None:
        env = {**os.environ, "KQUEUE_BOOTSTRAP_SERVERS": bootstrap, "KQ_TEST_QUEUE": queue}
        env.pop("KQUEUE_API_TOKEN", None)
        if token is not None:
            env["KQUEUE_API_TOKEN"] = token
        self.token = token
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kqueue", "api", "--app", app, "--port", "0", "--db", str(db), *extra],
            env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.url = self._read_url()

    def _read_url(self, timeout: float = 60.0) -> str:
        found: list[str] = []

        def read() -> None:
            assert self.proc.stdout is not None
            text = ""
            for line in self.proc.stdout:
                text += line
                match = re.search(r"http://[\d.]+:\d+", text)
                if match:
                    found.append(match.group(0))
                    return

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(timeout)
        if not found:
            self.stop()
            raise AssertionError(f"kqueue api did not start: {self.proc.stderr.read() if self.proc.stderr else ''}")
        return found[0]

    def request(self, method: str, path: str, body: Any = None, token: str | None = None,
                raw: bytes | None = None) -> tuple[int, Any]:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        request = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        bearer = token if token is not None else self.token
        if bearer:
            request.add_header("Authorization", f"Bearer {bearer}")
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return answer.status, json.loads(answer.read() or b"null")
        except urllib.error.HTTPError as exc:
            text = exc.read()
            try:
                return exc.code, json.loads(text)
            except ValueError:
                return exc.code, text.decode(errors="replace")

    def stop(self) -> str:
        """Stop it (SIGTERM, as a user's Ctrl-C or a pod's stop) and return what it wrote to stderr."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.stderr.read() if self.proc.stderr else ""

    def __enter__(self) -> ApiProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
