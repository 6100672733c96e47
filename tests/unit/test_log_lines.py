"""The lifecycle log's lines: the JSON short cut for `kqueue.task` records writes exactly what
python-json-logger writes for them, the cached timestamp is logging's own, and a lifecycle line made
without the caller lookup still goes through the logger's filters and handlers."""

from __future__ import annotations

import logging
import sys

import pytest
from pythonjsonlogger.json import JsonFormatter

from kqueue.core.records import Settlement
from kqueue.observe.logs import JSON_FORMAT, JSON_RENAMED, LifecycleLog, TextFormatter, formatter
from kqueue.sdk.middleware import SettleEvent

LIFECYCLE_FIELDS = [
    {"task_id": "t-1", "task": "noop", "queue": "q", "attempt": 1, "key": None, "duration_s": 1e-05},
    {"task_id": "t-2", "task": "send", "queue": "email", "attempt": 3, "key": 'k"quoted', "duration_s": 0.5,
     "error_type": "RuntimeError", "error": "bad \u00e9 \n line", "destination": "email.dlq"},
    {"task_id": "t-3", "task": "send", "queue": "email", "attempt": 2, "key": "k", "duration_s": None,
     "error_type": "Cancelled", "error": "cancelled before it started", "destination": "email.status"},
]


def _record(name: str, level: int, fields: dict[str, object], created: float = 1_764_360_000.25,
            message: str = "task %s", args: tuple[object, ...] = ("completed",)) -> logging.LogRecord:
    record = logging.getLogger(name).makeRecord(name, level, "", 0, message, args, None, None, dict(fields))
    record.created, record.msecs = created, (created - int(created)) * 1000
    return record


@pytest.mark.parametrize("fields", LIFECYCLE_FIELDS)
@pytest.mark.parametrize("level", [logging.INFO, logging.WARNING])
def test_the_json_short_cut_writes_what_python_json_logger_writes(fields: dict[str, object], level: int) -> None:
    ours, library = formatter("json"), JsonFormatter(JSON_FORMAT, rename_fields=JSON_RENAMED)
    record = _record("kqueue.task", level, fields)
    assert ours.format(record) == library.format(_record("kqueue.task", level, fields))


def test_other_records_and_tracebacks_go_the_library_way() -> None:
    ours, library = formatter("json"), JsonFormatter(JSON_FORMAT, rename_fields=JSON_RENAMED)
    other = _record("kqueue.worker", logging.WARNING, {"anything": [1, 2]}, message="stuck %d", args=(3,))
    assert ours.format(other) == library.format(other)
    try:
        raise ValueError("boom")
    except ValueError:
        failing = _record("kqueue.task", logging.ERROR, LIFECYCLE_FIELDS[0])
        failing.exc_info = sys.exc_info()
        assert '"exc_info": "Traceback' in ours.format(failing)


@pytest.mark.parametrize("created", [1_764_360_000.0, 1_764_360_000.999, 1_764_360_001.004, 1_700_000_000.5])
def test_the_cached_timestamp_is_loggings_own(created: float) -> None:
    ours, plain = TextFormatter(), logging.Formatter()
    for at in (created, created + 0.0005, created - 1):  # the same second again, and one before
        record = _record("kqueue.task", logging.INFO, {}, created=at)
        assert ours.formatTime(record) == plain.formatTime(record)


def test_a_lifecycle_line_still_passes_the_loggers_filters(caplog: pytest.LogCaptureFixture) -> None:
    event = SettleEvent(Settlement.RETRIED, "t-9", "send", "email", "email", 0, 5, b"user-1", 2, "E", "why",
                        None, 1.0, 0.25, 2_000, "email.delay.5s", "5s")
    dropped: list[str] = []

    class DropRetries(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            if record.getMessage() == "task retried" and getattr(record, "attempt", 0) == 3:
                dropped.append(record.getMessage())
                return False
            return True

    task_logger = logging.getLogger("kqueue.task")
    only = DropRetries()
    task_logger.addFilter(only)
    try:
        with caplog.at_level(logging.INFO, logger="kqueue.task"):
            LifecycleLog().on_settle(event)
            third = SettleEvent(Settlement.RETRIED, "t-9", "send", "email", "email", 0, 6, b"user-1", 3, "E", "why",
                                None, 1.0, 0.25, 2_000, "email.delay.5s", "5s")
            LifecycleLog().on_settle(third)
    finally:
        task_logger.removeFilter(only)
    lines = [r for r in caplog.records if r.name == "kqueue.task"]
    assert [(r.getMessage(), r.attempt, r.destination) for r in lines] == [  # type: ignore[attr-defined]
        ("task retried", 2, "email.delay.5s")]
    assert dropped == ["task retried"]
