"""Cron schedules as the REST API and the dashboard show them (real broker, `kqueue cron run` and
`kqueue api` as subprocesses): each schedule with its next fire and last fired tick, and the
scheduler leading."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.support.ui import WebDriverWait

from tests.integration.test_dashboard import _browser
from tests.support.api import ROOT, ApiProcess
from tests.support.kafka import unique
from tests.support.worker import wait_for

APP = "tests.apps.cron_app:app"


@pytest.fixture()
def scheduled(bootstrap: str, tmp_path: Path) -> Iterator[tuple[ApiProcess, subprocess.Popen[bytes]]]:
    env = {"KQ_CRON_APP": unique("cronapi"), "KQ_TEST_LOG": str(tmp_path / "ran.log")}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    queue = unique("cronq")
    scheduler = subprocess.Popen([sys.executable, "-m", "kqueue", "cron", "run", "--app", APP], cwd=ROOT,
                                 env={**os.environ, "KQUEUE_BOOTSTRAP_SERVERS": bootstrap, "KQ_TEST_QUEUE": queue},
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with ApiProcess(bootstrap, queue, tmp_path / "view.db", app=APP) as api:
            yield api, scheduler
    finally:
        scheduler.terminate()
        scheduler.wait(30)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _listing(api: ApiProcess) -> dict[str, Any]:
    code, body = api.request("GET", "/api/v1/cron")
    assert code == 200, body
    return dict(body)


def test_the_api_and_the_dashboard_show_schedules_and_the_leader(
        scheduled: tuple[ApiProcess, subprocess.Popen[bytes]], browser_binaries: tuple[str, str],
        tmp_path: Path) -> None:
    api, scheduler = scheduled
    wait_for(lambda: _listing(api)["schedules"][0]["last_fired_ms"] is not None
             and any(s["leader"] for s in _listing(api)["schedulers"]), 60, "a tick fired by a leader")
    listing = _listing(api)
    [schedule] = listing["schedules"]
    now_ms = time.time() * 1000
    assert (schedule["name"], schedule["task"], schedule["expression"], schedule["tz"]) == (
        "tick", "tick", "* * * * * *", "UTC")
    assert now_ms - 5000 < schedule["last_fired_ms"] <= now_ms  # every second: a recent tick
    assert now_ms - 2000 < schedule["next_fire_ms"] <= now_ms + 3000
    [leader] = [s for s in listing["schedulers"] if s["leader"]]
    assert leader["pid"] == scheduler.pid

    browser = _browser(tmp_path, browser_binaries)
    try:
        browser.get(f"{api.url}/#/")
        WebDriverWait(browser, 30, poll_frequency=0.2).until(
            lambda b: b.execute_script("return document.querySelectorAll('#cron tr[data-schedule=\"tick\"]').length"))
        cells = browser.execute_script(
            "return Array.from(document.querySelectorAll('#cron tr[data-schedule=\"tick\"] td'))"
            ".map(e => e.textContent)")
        assert cells[0] == "tick" and cells[3] == "* * * * * *" and cells[4] == "UTC", cells
        assert cells[6] != "never", cells  # it has fired
        leader_line = browser.execute_script("return document.getElementById('cron-leader').textContent")
        assert f"pid {scheduler.pid}" in leader_line, leader_line
    finally:
        browser.quit()
