"""The dashboard in a real headless browser (Debian's Chromium through chromedriver and Selenium)
against a real run: `kqueue api` (a subprocess), a worker and a broker. Tasks complete and fail;
the page shows them, their statuses, the DLQ with a task's hostile error text kept as text, a task's
timeline, and a replay started from the page goes through."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from tests.apps.lifecycle import make_app
from tests.support.api import ApiProcess
from tests.support.kafka import unique
from tests.support.worker import ThreadedWorker, wait_for

TOKEN = "dash-token"
HOSTILE = '<img src=x onerror="window.__pwned=1">'


def _browser(tmp_path: Path, binaries: tuple[str, str]) -> WebDriver:
    chromium, chromedriver = binaries
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    # Headless as root on a machine with no outside network: no sandbox, no background connections.
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", f"--user-data-dir={tmp_path / 'chromium'}", "--window-size=1400,1200"):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(chromedriver))


@pytest.fixture(scope="module")
def run(browser_binaries: tuple[str, str], bootstrap: str,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    # browser_binaries first: without them the test fails in one line before any broker is started
    queue = unique("dash")
    tmp = tmp_path_factory.mktemp("dashboard")
    app = make_app(queue, bootstrap)
    with ApiProcess(bootstrap, queue, tmp / "view.db", token=TOKEN) as api, \
            ThreadedWorker(app, group=unique("dash-g"), concurrency=4):
        tasks = app.tasks
        done = [tasks[(queue, "add")].enqueue({"a": n, "b": n}) for n in range(3)]
        doomed = [tasks[(queue, "doomed")].enqueue({"n": n}) for n in range(2)]
        hostile = tasks[(queue, "doomed")].enqueue({"n": HOSTILE})
        app.flush()

        def status(task_id: str) -> str:
            code, body = api.request("GET", f"/api/v1/tasks/{task_id}")
            return str(body["status"]) if code == 200 else ""

        wait_for(lambda: all(status(t) in ("completed", "failed") for t in [*done, *doomed, hostile]), 90,
                 "the tasks to finish")
        browser = _browser(tmp, browser_binaries)
        try:
            yield {"api": api, "queue": queue, "done": done, "doomed": doomed, "hostile": hostile,
                   "browser": browser, "tmp": tmp}
        finally:
            browser.quit()


def _wait(browser: WebDriver, what: str, condition: Any, timeout: float = 30) -> Any:
    try:
        return WebDriverWait(browser, timeout, poll_frequency=0.2).until(condition)
    except Exception:
        shot = Path(os.environ.get("TMPDIR", "/tmp")) / f"kqueue-dashboard-{int(time.time())}.png"
        browser.save_screenshot(str(shot))  # left out of git: under the temp dir
        raise AssertionError(f"the page never showed {what} (screenshot: {shot})") from None


def _texts(browser: WebDriver, selector: str) -> list[str]:
    """The text of every element matching `selector`, read in one go inside the page: the page
    re-renders its tables every 2 s, so elements looked up one by one can be replaced in between."""
    return list(browser.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0])).map(e => e.textContent)", selector))


def _attrs(browser: WebDriver, selector: str, name: str) -> list[str]:
    return list(browser.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0])).map(e => e.getAttribute(arguments[1]))",
        selector, name))


def _open(run: dict[str, Any]) -> WebDriver:
    browser: WebDriver = run["browser"]
    browser.get(f"{run['api'].url}/#token={TOKEN}")
    return browser


def test_the_page_shows_queues_workers_dead_letters_and_statuses(run: dict[str, Any]) -> None:
    browser = _open(run)
    queue_row = f"#queues tr[data-queue='{run['queue']}']"
    _wait(browser, "the queue row", lambda b: _texts(b, f"{queue_row} td"))
    cells = _texts(browser, f"{queue_row} td")
    assert cells[0] == run["queue"] and cells[6] == "3"  # three dead letters
    assert _texts(browser, f"{queue_row} svg.spark.done title")
    _wait(browser, "a worker", lambda b: any(run["queue"] in t for t in _texts(b, "#workers tbody tr")))
    _wait(browser, "the dead letters", lambda b: set(_attrs(b, "#dlq tbody tr", "data-task-id"))
          >= {*run["doomed"], run["hostile"]})
    # The recent tasks come from a fetch of their own, which may land after the dead letters'.
    def statuses(b: WebDriver) -> dict[str, str]:
        return dict(b.execute_script(
            "return Object.fromEntries(Array.from(document.querySelectorAll('#recent tbody tr[data-task-id]'))"
            ".map(r => [r.dataset.taskId, r.querySelectorAll('td')[2].textContent]))"))

    _wait(browser, "the recent tasks", lambda b: set(statuses(b)) >= {*run["done"], *run["doomed"]})
    shown = statuses(browser)
    assert all(shown.get(t) == "completed" for t in run["done"]), shown
    assert all(shown.get(t) == "failed" for t in run["doomed"]), shown


def test_task_text_is_shown_as_text_never_run_as_html(run: dict[str, Any]) -> None:
    browser = _open(run)
    row = f"#dlq tr[data-task-id='{run['hostile']}']"
    _wait(browser, "the hostile dead letter", lambda b: _texts(b, row))
    assert HOSTILE in _texts(browser, row)[0]
    assert not browser.find_elements(By.CSS_SELECTOR, "main img")
    assert browser.execute_script("return window.__pwned === undefined")


def test_looking_up_a_task_shows_its_status_and_timeline(run: dict[str, Any]) -> None:
    browser = _open(run)
    box = browser.find_element(By.ID, "task-id")
    box.clear()
    box.send_keys(run["doomed"][0])
    browser.find_element(By.CSS_SELECTOR, "#lookup button").click()
    _wait(browser, "the task's status", lambda b: "failed" in "".join(_texts(b, "#task-fields")))
    fields = "".join(_texts(browser, "#task-fields"))
    assert run["doomed"][0] in fields and "doomed task 0" in fields
    steps = _texts(browser, "#timeline li")
    assert any("queued on" in s and "attempt 1" in s for s in steps), steps
    assert any("waiting in the 1s tier (attempt 2)" in s for s in steps), steps
    assert any("failed (attempt 2)" in s for s in steps), steps


def test_replay_from_the_page(run: dict[str, Any]) -> None:
    browser = _open(run)
    target = run["doomed"][1]
    code, before = run["api"].request("GET", f"/api/v1/tasks/{target}")
    assert code == 200 and before["status"] == "failed"
    button = f"#dlq tr[data-task-id='{target}'] button.replay"
    _wait(browser, "the replay button", lambda b: _texts(b, button))
    browser.execute_script("document.querySelector(arguments[0]).click()", button)  # the live one, found now
    _wait(browser, "the replay's result", lambda b: f"replayed {target}" in "".join(_texts(b, "#replay-result")))

    def failed_again() -> bool:
        code, now = run["api"].request("GET", f"/api/v1/tasks/{target}")
        return code == 200 and now["status"] == "failed" and now["timestamps"]["finished_at"] > \
            before["timestamps"]["finished_at"]

    wait_for(failed_again, 60, "the replayed task to run (and fail) again")


def test_without_the_token_the_page_asks_for_it(run: dict[str, Any]) -> None:
    browser: WebDriver = run["browser"]
    browser.get(f"{run['api'].url}/")
    browser.execute_script("sessionStorage.clear()")
    browser.get(f"{run['api'].url}/")
    _wait(browser, "the token form", lambda b: b.find_element(By.ID, "token-form").is_displayed())
    assert "token" in "".join(_texts(browser, "#error"))
    assert not _texts(browser, "#queues tbody tr[data-queue]")
