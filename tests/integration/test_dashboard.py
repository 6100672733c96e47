"""The dashboard in a real headless browser (Debian's Chromium through chromedriver and Selenium)
against a real run: `kqueue api` (a subprocess), a worker and a broker.

Two queues: one a worker runs (tasks complete and fail; one fails with hostile text, one has an id
full of / % ? #), and one no worker reads, holding exactly what the test wrote into it: 10,000 raw
dead letters, and records waiting in a lane and a tier. The operator's console: an overview with a
compact partition summary per worker, a page per queue (depth per lane and tier, charts, pause and
resume), dead letters paged, filtered and replayed by selection, a task page with its timeline; task
text is always text."""

from __future__ import annotations

import json
import os
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from confluent_kafka import Producer
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from kqueue.core import names
from kqueue.transport.config import producer_config
from tests.apps.console import letters_queue, make_console_app
from tests.apps.lifecycle import make_app
from tests.support.api import ApiProcess
from tests.support.kafka import unique
from tests.support.worker import ThreadedWorker, wait_for

TOKEN = "dash-token"
HOSTILE = '<img src=x onerror="window.__pwned=1">'
RUN = unique("run")  # in every task id: the status topic outlives a run, and ids must not meet old events
ODD_ID = f"odd/{RUN} 100%?x=1#frag"
LETTERS = 10_000
TYPES = ("resize", "thumbnail", "notify")
ERRORS = (("TimeoutError", "upstream timed out after 30 s"), ("ValueError", "image too large"),
          ("KeyError", "'size'"), ("RuntimeError", "disk full"))
DASH = "\u2013"  # the page's ranges: "0\u20132", "1\u201350 of 10,000"
WAITING = {"high": 6, "1s": 5}  # records written into the letters queue's high lane and 1s tier


def _browser(tmp_path: Path, binaries: tuple[str, str]) -> WebDriver:
    chromium, chromedriver = binaries
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    # Headless as root on a machine with no outside network: no sandbox, no background connections.
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", f"--user-data-dir={tmp_path / 'chromium'}", "--window-size=1400,1200"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the console, for _page_errors
    return webdriver.Chrome(options=options, service=Service(chromedriver))


def _page_errors(browser: WebDriver) -> list[str]:
    """Errors the page's console logged since the last look (a script error, a refused inline script
    or style), leaving out answers the API gave with an error status (a 404 the page shows)."""
    return [entry["message"] for entry in browser.get_log("browser")
            if entry["level"] == "SEVERE" and "Failed to load resource" not in entry["message"]]


def letter_id(n: int) -> str:
    return f"{RUN}-letter-{n:05d}"


def letter_of(n: int) -> tuple[str, str, str]:
    """The n-th raw dead letter: its task type, error type and message (failed at base + n ms)."""
    error_type, message = ERRORS[n % len(ERRORS)]
    return TYPES[n % len(TYPES)], error_type, message


def _write_letters_queue(bootstrap: str, queue: str) -> None:
    """10,000 dead letters straight into `<queue>.dlq`, carrying the headers a worker's dead letter
    carries (what the status view reads), and records waiting in the high lane and the 1s tier."""
    producer = Producer(producer_config(bootstrap, **{"linger.ms": 20}))
    base = int(time.time() * 1000) - 60_000
    dlq = names.dlq_topic(queue)
    for n in range(LETTERS):
        task_type, error_type, message = letter_of(n)
        producer.produce(dlq, json.dumps({"n": n}).encode(), f"k{n}".encode(), partition=n % 3, headers=[
            (names.H_ID, letter_id(n).encode()), (names.H_TYPE, task_type.encode()), (names.H_ATTEMPT, b"3"),
            (names.H_MAX_ATTEMPTS, b"3"), (names.H_FAILED_AT, str(base + n).encode()),
            (names.H_ERROR_TYPE, error_type.encode()), (names.H_ERROR_MESSAGE, message.encode()),
            (names.H_CONTENT_TYPE, b"json")])
        if n % 1000 == 999:
            producer.poll(0)
    for topic, records in ((names.lane_topic(queue, "high"), WAITING["high"]),
                           (names.delay_topic(queue, "1s"), WAITING["1s"])):
        for n in range(records):
            producer.produce(topic, b"{}", f"w{n}".encode(), headers=[(names.H_TYPE, b"resize")])
    assert producer.flush(60) == 0


def _total(api: ApiProcess, path: str) -> int:
    """X-Total-Count of a dead-letter listing (ApiProcess.request gives no headers)."""
    request = urllib.request.Request(api.url + path, headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        json.loads(answer.read())
        return int(answer.headers["X-Total-Count"])


@pytest.fixture(scope="module")
def run(browser_binaries: tuple[str, str], bootstrap: str,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    # browser_binaries first: without them the test fails in one line before any broker is started
    queue = unique("dash")
    letters = letters_queue(queue)
    tmp = tmp_path_factory.mktemp("dashboard")
    app = make_app(queue, bootstrap)  # the worker's: the first queue only
    app.ensure_queue(queue)
    make_console_app(queue, bootstrap).ensure_queue(letters)
    _write_letters_queue(bootstrap, letters)
    with ApiProcess(bootstrap, queue, tmp / "view.db", app="tests.apps.console:app", token=TOKEN) as api, \
            ThreadedWorker(app, group=unique("dash-g"), concurrency=4):
        tasks = app.tasks
        done = [tasks[(queue, "add")].enqueue({"a": n, "b": n}) for n in range(3)]
        doomed = [tasks[(queue, "doomed")].enqueue({"n": n}) for n in range(2)]
        hostile = tasks[(queue, "doomed")].enqueue({"n": HOSTILE})
        app.flush()
        foreign = Producer(producer_config(bootstrap))
        foreign.produce(queue, b'{"a": 20, "b": 22}', headers=[(names.H_ID, ODD_ID.encode()), (names.H_TYPE, b"add")])
        assert foreign.flush(30) == 0

        def status(task_id: str) -> str:
            code, body = api.request("GET", f"/api/v1/tasks/{quote(task_id, safe='')}")
            return str(body["status"]) if code == 200 else ""

        wait_for(lambda: all(status(t) in ("completed", "failed") for t in [*done, *doomed, hostile, ODD_ID]), 90,
                 "the tasks to finish")
        wait_for(lambda: _total(api, f"/api/v1/queues/{letters}/dlq?limit=1") == LETTERS, 60,
                 "the view to read the 10,000 dead letters")
        browser = _browser(tmp, browser_binaries)
        try:
            yield {"api": api, "queue": queue, "letters": letters, "done": done, "doomed": doomed,
                   "hostile": hostile, "browser": browser, "tmp": tmp}
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


def _click(browser: WebDriver, selector: str) -> None:
    browser.execute_script("document.querySelector(arguments[0]).click()", selector)  # the live one, found now


def _open(run: dict[str, Any], page: str = "#/") -> WebDriver:
    """The dashboard with the token given in the address (as `kqueue demo` links it), then `page`."""
    browser: WebDriver = run["browser"]
    browser.get(f"{run['api'].url}/#token={TOKEN}")
    _wait(browser, "the token taken from the address", lambda b: "token" not in b.current_url)
    browser.execute_script("location.hash = arguments[0]", page)
    return browser


def _queue_page(queue: str) -> str:
    return f"#/queues/{quote(queue, safe='')}"


def _task_page(task_id: str) -> str:
    return f"#/tasks/{quote(task_id, safe='')}"


def test_the_overview_shows_queues_and_each_worker_as_a_compact_partition_summary(run: dict[str, Any]) -> None:
    browser = _open(run)
    queue, letters = run["queue"], run["letters"]
    _wait(browser, "both queue rows", lambda b: len(_texts(b, "#queues tr[data-queue]")) == 2)
    cells = {row: _texts(browser, f"#queues tr[data-queue='{row}'] td") for row in (queue, letters)}
    figures = {row: run["api"].request("GET", f"/api/v1/queues/{row}")[1] for row in (queue, letters)}
    assert cells[queue][0] == queue and cells[queue][7] == str(figures[queue]["dlq_records"]) != "0", cells
    assert cells[letters][7] == "10,000", cells
    assert cells[letters][2] == str(figures[letters]["lag"]) and figures[letters]["lag"] >= sum(WAITING.values())
    assert _attrs(browser, f"#queues tr[data-queue='{queue}'] a", "href")[0].endswith(_queue_page(queue))
    assert _texts(browser, f"#queues tr[data-queue='{queue}'] svg.spark.done title")
    # One worker holds partitions 0-2 of the queue's lanes and tiers: one short line, no topic names.
    summary = f"{queue}: 0{DASH}2 · tiers: 0{DASH}2"
    live = "#workers tr[data-state='up'] td.partitions"
    _wait(browser, "the worker's partition summary", lambda b: summary in _texts(b, live))
    assert ".delay." not in "".join(_texts(browser, live)) and "live" in "".join(_texts(browser, "#workers"))
    assert _texts(browser, "#workers-count")[0].startswith(f"{len(_texts(browser, live))} live")

    def statuses(b: WebDriver) -> dict[str, str]:
        return dict(b.execute_script(
            "return Object.fromEntries(Array.from(document.querySelectorAll('#recent tbody tr[data-task-id]'))"
            ".map(r => [r.dataset.taskId, r.querySelectorAll('td')[3].textContent]))"))

    _wait(browser, "the recent tasks", lambda b: set(statuses(b)) >= {*run["done"], *run["doomed"]})
    shown = statuses(browser)
    assert all(shown.get(t) == "completed" for t in run["done"]), shown
    assert all(shown.get(t) == "failed" for t in run["doomed"]), shown
    assert _page_errors(browser) == []


def test_the_partition_summary_groups_by_queue_lanes_and_tiers(run: dict[str, Any]) -> None:
    """The summary itself, in the page's own module: lanes holding the same partitions say them once,
    tiers apart; lanes that differ name themselves; runs of three or more are ranges."""
    browser = _open(run)
    summaries = browser.execute_async_script("""
        const done = arguments[arguments.length - 1];
        import("./static/dash-partitions.js").then(({partitionSummary, topicIndex}) => {
          const index = topicIndex([{queue: "email", lanes: [
            {topic: "p.email", lane: "normal", tier: ""}, {topic: "p.email.high", lane: "high", tier: ""},
            {topic: "p.email.delay.1s", lane: "", tier: "1s"}, {topic: "p.email.delay.5s", lane: "", tier: "5s"}]}]);
          const even = (topic) => [0, 2, 4].map(p => `${topic}/${p}`);
          done([
            partitionSummary([...even("p.email"), ...even("p.email.high"), ...even("p.email.delay.1s"),
                              ...even("p.email.delay.5s")], index),
            partitionSummary(["p.email/0", "p.email.high/1", "p.email.delay.5s/3", "p.email.delay.1s/0",
                              "sms/1", "sms/2", "sms/3", "sms/7", "sms.delay.30s/1"], index)]);
        }, (error) => done(String(error)));""")
    assert summaries == [
        [{"queue": "email", "text": "email: 0, 2, 4 · tiers: 0, 2, 4"}],
        [{"queue": "email", "text": "email: high 1 · normal 0 · tiers: 1s 0 · 5s 3"},
         {"queue": "sms", "text": f"sms: 1{DASH}3, 7 · tiers: 1"}]], summaries


def test_the_queue_page_shows_depth_per_lane_and_tier_and_charts(run: dict[str, Any]) -> None:
    letters = run["letters"]
    browser = _open(run, _queue_page(letters))

    def depths(b: WebDriver) -> dict[str, str]:
        return dict(b.execute_script(
            "return Object.fromEntries(Array.from(document.querySelectorAll('#depth tbody tr[data-topic]'))"
            ".map(r => [r.querySelectorAll('td')[0].textContent, r.querySelector('td.depth').textContent]))"))

    _wait(browser, "the lanes' and tiers' depths", lambda b: depths(b).get("lane high") == str(WAITING["high"])
          and depths(b).get("tier 1s") == str(WAITING["1s"]))
    assert {"lane normal", "lane low", "tier 5s"} <= set(depths(browser)), depths(browser)
    assert _texts(browser, "#queue-name") == [letters]
    assert not browser.find_element(By.ID, "page-overview").is_displayed()

    # The worked queue's charts: what the series route says, drawn; every bucket titled with its figures.
    queue = run["queue"]
    browser.execute_script("location.hash = arguments[0]", _queue_page(queue))
    _wait(browser, "the charts", lambda b: _texts(b, "#queue-name") == [queue]
          and len(_texts(b, "#charts figure")) == 2 and _texts(b, "#charts polyline.line.done"))
    code, series = run["api"].request("GET", f"/api/v1/queues/{queue}/series?minutes=5")
    assert code == 200
    completed = sum(bucket["completed"] for bucket in series)
    assert completed >= len(run["done"]) + 1  # the added tasks and the odd id's

    def charted(b: WebDriver) -> int:
        titles = _texts(b, "#charts figure:first-child rect.hover title")
        return sum(int(line.split(": ")[1]) for t in titles for line in t.split("\n")
                   if line.startswith("completed: "))

    _wait(browser, "every completed task on the chart", lambda b: charted(b) == completed)
    assert "latency" in "".join(_texts(browser, "#charts figcaption"))
    assert _page_errors(browser) == []


def test_dead_letters_page_filter_and_replay_a_selection(run: dict[str, Any]) -> None:
    letters = run["letters"]
    browser = _open(run, _queue_page(letters))
    rows = "#dlq tbody tr[data-task-id]"

    def page_shows(first: int, last: int, total: int) -> Any:
        text = f"{first:,}{DASH}{last:,} of {total:,}"
        return lambda b: _texts(b, "#dlq-range") == [text] and len(_attrs(b, rows, "data-task-id")) == last - first + 1

    _wait(browser, "the first page", page_shows(1, 50, LETTERS))
    newest = [letter_id(n) for n in range(LETTERS - 1, LETTERS - 51, -1)]
    assert _attrs(browser, rows, "data-task-id") == newest
    _click(browser, "#dlq-next")
    _wait(browser, "the second page", page_shows(51, 100, LETTERS))
    second = _attrs(browser, rows, "data-task-id")
    assert second == [letter_id(n) for n in range(LETTERS - 51, LETTERS - 101, -1)] and not set(second) & set(newest)
    _click(browser, "#dlq-prev")
    _wait(browser, "the first page again", page_shows(1, 50, LETTERS))

    def filter_by(task_type: str, error: str) -> None:
        browser.execute_script("document.getElementById('dlq-type').value = arguments[0];"
                               "document.getElementById('dlq-error').value = arguments[1];"
                               "document.getElementById('dlq-filter').requestSubmit()", task_type, error)

    thumbnails = [n for n in range(LETTERS) if letter_of(n)[0] == "thumbnail"]
    filter_by("thumbnail", "")
    _wait(browser, "the thumbnail letters", page_shows(1, 50, len(thumbnails)))
    assert set(_texts(browser, f"{rows} td:nth-child(3)")) == {"thumbnail"}
    timed_out = [n for n in thumbnails if "timed out" in letter_of(n)[2]]
    filter_by("thumbnail", "TIMED OUT")
    _wait(browser, "the thumbnails that timed out", page_shows(1, 50, len(timed_out)))
    assert _attrs(browser, rows, "data-task-id") == [letter_id(n) for n in reversed(timed_out)][:50]
    filter_by("", "disk full")
    _wait(browser, "the disk-full letters", page_shows(1, 50, LETTERS // 4))
    _click(browser, "#dlq-clear")
    _wait(browser, "every letter again", page_shows(1, 50, LETTERS))

    picked = newest[:3]
    for task_id in picked:
        _click(browser, f"#dlq tr[data-task-id='{task_id}'] input.pick")
    _wait(browser, "three picked", lambda b: _texts(b, "#dlq-replay") == ["Replay selected (3)"])
    _click(browser, "#dlq-replay")
    _wait(browser, "the replay's result", lambda b: _texts(b, "#replay-result") == ["replayed 3"])
    assert sorted(_attrs(browser, "#replay-result", "data-replayed")[0].split("\n")) == sorted(picked)

    def states(b: WebDriver) -> dict[str, str]:
        return dict(b.execute_script(
            "return Object.fromEntries(Array.from(document.querySelectorAll(arguments[0]))"
            ".map(r => [r.dataset.taskId, r.querySelectorAll('td')[6].textContent]))", rows))

    _wait(browser, "the replayed letters marked", lambda b: [states(b).get(t) for t in newest[:4]]
          == ["replayed", "replayed", "replayed", "pending"])
    assert not browser.find_elements(By.CSS_SELECTOR, f"#dlq tr[data-task-id='{picked[0]}'] input.pick")
    code, listed = run["api"].request("GET", f"/api/v1/queues/{letters}/dlq?limit=4")
    assert code == 200 and [letter["pending"] for letter in listed] == [False, False, False, True], listed
    code, refused = run["api"].request("GET", f"/api/v1/queues/{letters}/dlq?offset=-1")
    assert code == 422 and refused["detail"][0]["loc"] == ["query", "offset"], refused
    assert _page_errors(browser) == []


def test_the_task_page_shows_status_and_timeline(run: dict[str, Any]) -> None:
    task_id = run["doomed"][0]
    browser = _open(run)
    box = browser.find_element(By.ID, "task-id")  # the header's lookup goes to the task's page
    box.clear()
    box.send_keys(task_id)
    browser.find_element(By.CSS_SELECTOR, "#lookup button").click()
    _wait(browser, "the task's status", lambda b: "failed" in "".join(_texts(b, "#task-fields")))
    assert browser.execute_script("return location.hash") == _task_page(task_id)
    fields = "".join(_texts(browser, "#task-fields"))
    assert task_id in fields and "doomed task 0" in fields
    steps = _texts(browser, "#timeline li")
    assert any("queued on" in s and "attempt 1" in s for s in steps), steps
    assert any("waiting in the 1s tier (attempt 2)" in s for s in steps), steps
    assert any("failed (attempt 2)" in s for s in steps), steps

    # An id holding / % ? # and a space, quoted in the address and in the API's paths.
    browser.execute_script("location.hash = arguments[0]", _task_page(ODD_ID))
    _wait(browser, "the odd id's page", lambda b: "completed" in "".join(_texts(b, "#task-fields")))
    assert _texts(browser, "#task-title") == [ODD_ID]
    assert any(" completed" in s for s in _texts(browser, "#timeline li")), _texts(browser, "#timeline li")
    browser.execute_script("location.hash = arguments[0]", "#/tasks/%E0%A4%A")  # no UTF-8: no such page
    _wait(browser, "the page saying so", lambda b: b.find_element(By.ID, "page-missing").is_displayed())
    assert "#/tasks/%E0%A4%A" in _texts(browser, "#missing-why")[0]
    assert _page_errors(browser) == []


def test_task_text_is_shown_as_text_never_run_as_html(run: dict[str, Any]) -> None:
    browser = _open(run, _queue_page(run["queue"]))
    row = f"#dlq tr[data-task-id='{run['hostile']}']"
    _wait(browser, "the hostile dead letter", lambda b: _texts(b, row))
    assert HOSTILE in _texts(browser, row)[0]
    browser.execute_script("location.hash = arguments[0]", _task_page(run["hostile"]))
    _wait(browser, "the hostile task's page", lambda b: HOSTILE in "".join(_texts(b, "#task-fields")))
    assert not browser.find_elements(By.CSS_SELECTOR, "main img")
    assert browser.execute_script("return window.__pwned === undefined")


def test_replay_from_the_page_runs_the_task_again(run: dict[str, Any]) -> None:
    target = run["doomed"][1]
    code, before = run["api"].request("GET", f"/api/v1/tasks/{target}")
    assert code == 200 and before["status"] == "failed"
    browser = _open(run, _queue_page(run["queue"]))
    pick = f"#dlq tr[data-task-id='{target}'] input.pick"
    _wait(browser, "the letter's checkbox", lambda b: _texts(b, pick))
    _click(browser, pick)
    _wait(browser, "one picked", lambda b: _texts(b, "#dlq-replay") == ["Replay selected (1)"])
    _click(browser, "#dlq-replay")
    _wait(browser, "the replay's result", lambda b: _texts(b, "#replay-result") == ["replayed 1"])

    def failed_again() -> bool:
        code, now = run["api"].request("GET", f"/api/v1/tasks/{target}")
        return code == 200 and now["status"] == "failed" and now["timestamps"]["finished_at"] > \
            before["timestamps"]["finished_at"]

    wait_for(failed_again, 60, "the replayed task to run (and fail) again")


def test_the_pause_button_posts_to_the_pause_route(run: dict[str, Any]) -> None:
    """Pause with a reason, then Resume, on the queue no worker reads. With the pause routes the
    queue shows paused, since when and why, then running; an API without them answers the click
    with its error, which the page shows."""
    letters, api = run["letters"], run["api"]
    code, spec = api.request("GET", "/openapi.json")
    assert code == 200
    has_pause = "/api/v1/queues/{queue}/pause" in spec["paths"]
    browser = _open(run, _queue_page(letters))
    _wait(browser, "the queue's page", lambda b: _texts(b, "#queue-name") == [letters]
          and _texts(b, "#depth tbody tr[data-topic]"))
    browser.find_element(By.ID, "pause-reason").send_keys("incident 42: <b>downstream</b> is down")
    browser.find_element(By.ID, "pause").click()
    if not has_pause:
        _wait(browser, "the API's answer", lambda b: _texts(b, "#pause-result")[0].startswith("pause failed: "))
        assert "Not Found (HTTP 404)" in _texts(browser, "#pause-result")[0]
        return
    _wait(browser, "the queue paused", lambda b: _attrs(b, "#queue-state", "data-paused") == ["true"])
    state = _texts(browser, "#queue-state")[0]
    assert "paused since" in state and "incident 42: <b>downstream</b> is down" in state, state
    code, figures = api.request("GET", f"/api/v1/queues/{letters}")
    assert code == 200 and figures["paused"]["reason"] == "incident 42: <b>downstream</b> is down"
    browser.find_element(By.ID, "resume").click()
    _wait(browser, "the queue running again", lambda b: _attrs(b, "#queue-state", "data-paused") == ["false"])


def test_the_queue_page_shows_the_queue_wide_rate_limit(run: dict[str, Any]) -> None:
    letters, api = run["letters"], run["api"]

    def limit_shown(b: WebDriver) -> str:
        return str(b.execute_script(
            "const dt = Array.from(document.querySelectorAll('#queue-figures dt'))"
            ".find(d => d.textContent === 'rate limit'); return dt ? dt.nextElementSibling.textContent : ''"))

    browser = _open(run, _queue_page(letters))
    _wait(browser, "no limit shown", lambda b: limit_shown(b) == "none (queue-wide)")
    code, _ = api.request("POST", f"/api/v1/queues/{letters}/limit", {"rate": "500/s"})
    assert code == 200
    _wait(browser, "the limit shown", lambda b: limit_shown(b) == "500/s, all task types together")
    code, _ = api.request("POST", f"/api/v1/queues/{letters}/limit", {"rate": None})
    assert code == 200
    _wait(browser, "the limit lifted", lambda b: limit_shown(b) == "none (queue-wide)")
    assert _page_errors(browser) == []


def test_without_the_token_the_page_asks_for_it(run: dict[str, Any]) -> None:
    browser: WebDriver = run["browser"]
    browser.get(f"{run['api'].url}/{_queue_page(run['queue'])}")
    browser.execute_script("sessionStorage.clear()")
    browser.refresh()  # a page loaded afresh, knowing no token
    _wait(browser, "the token form", lambda b: b.find_element(By.ID, "token-form").is_displayed())
    assert "token" in "".join(_texts(browser, "#error"))
    assert not _texts(browser, "#depth tbody tr[data-topic]")
    browser.find_element(By.ID, "token").send_keys(TOKEN)
    browser.find_element(By.CSS_SELECTOR, "#token-form button").click()
    _wait(browser, "the queue's page once the token is given", lambda b: _texts(b, "#depth tbody tr[data-topic]"))
