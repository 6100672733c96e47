"""`@app.cron` refuses a bad schedule when the decorator runs, with one line naming the value."""

from __future__ import annotations

from typing import Any

import pytest

from kqueue import App
from kqueue.sdk.task import TaskDef

SCHEMA = {"type": "record", "name": "Report", "fields": [{"name": "day", "type": "string"}]}


def make_app() -> App:
    return App("cron-unit", "localhost:1")


def test_a_schedule_is_registered_on_the_task_and_its_ticks_have_stable_ids() -> None:
    app = make_app()

    @app.cron("*/5 * * * *", tz="Europe/Berlin", payload={"day": "today"}, catch_up=False)
    @app.task(queue="reports", schema=SCHEMA)
    def report(payload: dict[str, Any]) -> None: ...

    assert isinstance(report, TaskDef)
    [entry] = app.cron_entries.values()
    assert (entry.name, entry.queue, entry.catch_up, entry.schedule.tz_name) == (
        "reports.report", "reports", False, "Europe/Berlin")
    assert entry.task_id(1_800_000_000) == "cron:reports.report:1800000000"
    topic, key, value, headers = entry.record(1_800_000_000, "pre.")
    assert topic == "pre.reports" and key == b"reports.report" and value == report.encode({"day": "today"})
    assert dict(headers)["kq-id"] == b"cron:reports.report:1800000000"
    assert dict(headers)["kq-type"] == b"report"


def test_catch_up_defaults_to_firing_the_latest_missed_tick() -> None:
    app = make_app()

    @app.cron("0 9 * * *")
    @app.task
    def morning(payload: dict[str, Any]) -> None: ...

    assert app.cron_entries["default.morning"].catch_up is True


@pytest.mark.parametrize(("options", "named"), [
    ({"expression": "61 * * * *"}, "'61 * * * *'"),
    ({"expression": "* * * * * * *"}, "'* * * * * * *'"),
    ({"tz": "Europe/Atlantis"}, "'Europe/Atlantis'"),
    ({"catch_up": "yes"}, "'yes'"),
    ({"catch_up": 1}, "catch_up must be True"),
    ({"priority": "urgent"}, "'urgent'"),
    ({"name": ""}, "name must be a non-empty string"),
    ({"payload": {"day": 5}}, "payload for task 'report' does not encode"),
])
def test_bad_options_are_refused_at_import_naming_the_value(options: dict[str, Any], named: str) -> None:
    app = make_app()
    expression = options.pop("expression", "* * * * *")
    with pytest.raises(ValueError) as caught:
        @app.cron(expression, **options)
        @app.task(schema=SCHEMA)
        def report(payload: dict[str, Any]) -> None: ...
    assert named in str(caught.value) and "\n" not in str(caught.value)
    assert app.cron_entries == {}


def test_cron_must_go_above_task_and_one_name_is_one_schedule() -> None:
    app = make_app()
    with pytest.raises(TypeError, match=r"above @app\.task"):
        @app.task
        @app.cron("* * * * *")  # type: ignore[arg-type]
        def upside_down(payload: dict[str, Any]) -> None: ...

    @app.cron("0 * * * *")
    @app.task
    def twice(payload: dict[str, Any]) -> None: ...

    with pytest.raises(ValueError, match=r"'default\.twice' is already registered"):
        app.cron("30 * * * *")(twice)
    app.cron("30 * * * *", name="twice-half-past")(twice)
    assert sorted(app.cron_entries) == ["default.twice", "twice-half-past"]
