"""`kqueue api` watches the status view's reader (its ingest child process): killed, it is started
again after a backoff, /readyz says so meanwhile, and tasks enqueued afterwards show in the view."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from kqueue import App
from tests.apps.lifecycle import make_app
from tests.support.api import ROOT, ApiProcess
from tests.support.kafka import unique
from tests.support.worker import ThreadedWorker, wait_for


def readyz(api: ApiProcess, path: str = "/readyz") -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(api.url + path, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def reader_pids(api: ApiProcess) -> list[int]:
    """The API's children started by multiprocessing's spawn (the reader), from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == api.proc.pid and b"spawn_main" in cmdline:
            found.append(int(entry.name))
    return found


@pytest.fixture()
def running(bootstrap: str, tmp_path: Path) -> Iterator[tuple[App, ApiProcess, str]]:
    queue = unique("reader")
    app = make_app(queue, bootstrap)
    with ApiProcess(bootstrap, queue, tmp_path / "view.db") as api, \
            ThreadedWorker(app, group=unique("reader-g"), concurrency=2):
        saved = os.environ.get("KQUEUE_API_URL")
        os.environ["KQUEUE_API_URL"] = api.url
        try:
            yield app, api, queue
        finally:
            if saved is None:
                os.environ.pop("KQUEUE_API_URL", None)
            else:
                os.environ["KQUEUE_API_URL"] = saved


def test_a_killed_reader_is_restarted_and_readyz_reports_it(running: tuple[App, ApiProcess, str]) -> None:
    app, api, queue = running
    add = app.tasks[(queue, "add")]
    wait_for(lambda: readyz(api)[0] == 200, 60, "/readyz to answer 200")
    code, body = readyz(api)
    assert code == 200 and body["ready"] is True and body["status_view"]["state"] == "reading", body
    assert app.wait(add.enqueue({"a": 1, "b": 1}), timeout=60).status == "completed"

    [first] = reader_pids(api)
    os.kill(first, signal.SIGKILL)
    # Not ready while it is down (the first restart waits a second, then the child needs to start).
    wait_for(lambda: readyz(api)[0] == 503, 5, "/readyz to answer 503")
    code, body = readyz(api)
    assert code == 503 and body["ready"] is False and body["status_view"]["state"] in ("restarting", "starting"), body
    assert "SIGKILL" in body["status_view"]["detail"], body
    assert readyz(api, "/livez") == (200, {"alive": True})  # alive all along: a restart is not a reason to kill it

    wait_for(lambda: readyz(api)[0] == 200, 60, "/readyz to answer 200 again")
    code, body = readyz(api)
    assert code == 200 and body["status_view"]["restarts"] == 1 and body["status_view"]["state"] == "reading", body
    assert reader_pids(api) != [first]
    # The new reader reads: a task enqueued now (the API never saw it) is found and seen completing,
    # which only the reader can tell (the commit passing it).
    later = add.enqueue({"a": 2, "b": 3})
    done = app.wait(later, timeout=60)
    assert (done.status, done.value) == ("completed", {"sum": 5})
    log = api.stop()
    assert "status view's reader stopped (killed by SIGKILL)" in log, log
    assert "starting it again in 1.0s" in log, log


def test_a_stop_signal_to_the_whole_group_is_a_quiet_stop(bootstrap: str, tmp_path: Path) -> None:
    """`timeout`, systemd and a terminal's Ctrl-C signal the API's whole process group: the reader
    gets the SIGTERM first and stops cleanly, which is not reported as a crash nor restarted."""
    env = {**os.environ, "KQUEUE_BOOTSTRAP_SERVERS": bootstrap, "KQ_TEST_QUEUE": unique("group-stop")}
    env.pop("KQUEUE_API_TOKEN", None)
    proc = subprocess.Popen([sys.executable, "-m", "kqueue", "api", "--app", "tests.apps.lifecycle:app", "--port",
                             "0", "--db", str(tmp_path / "view.db")], env=env, cwd=ROOT, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        url = re.search(r"http://[\d.]+:\d+", first)
        assert url is not None, first
        api = SimpleNamespace(url=url.group(0))
        wait_for(lambda: readyz(api)[0] == 200, 60, "the reader to read")  # type: ignore[arg-type]
        os.killpg(proc.pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    assert proc.returncode == 0, err
    assert "reader stopped" not in err and "starting it again" not in err, err
