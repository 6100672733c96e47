"""Settlements handed to middleware a batch at a time: the lazy `Completions` sequence, the default
`on_settle_many`, and the metrics' fast path over the worker's items, which must expose exactly what
the one-event-at-a-time path does."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Sequence

import pytest
from prometheus_client import CollectorRegistry, generate_latest

import kqueue
from kqueue.core.headers import enqueued_at_ms
from kqueue.observe.logs import LifecycleLog
from kqueue.observe.metrics import MetricsMiddleware
from kqueue.sdk.middleware import Hooks, SettleEvent
from kqueue.worker import events as worker_events
from kqueue.worker.decode import Decoder
from kqueue.worker.events import Completions, completed_event
from kqueue.worker.work import WorkItem

SETTLED_AT = 1_700_000_010_000


def _app() -> kqueue.App:
    app = kqueue.App("m", "localhost:1")

    @app.task(queue="email")
    def send(payload: object) -> None: ...

    @app.task(queue="email")
    def resize(payload: object) -> None: ...

    return app


def _item(app: kqueue.App, offset: int, name: str, run: float | None, headers: dict[str, bytes],
          decoded_enqueued_at: int = 0) -> WorkItem:
    item = WorkItem("email", 0, offset, b"k", b"", headers, "email", app.tasks[("email", name)])
    item.run_seconds = run
    item.started_at = 1_700_000_000.0
    item.enqueued_at_ms = decoded_enqueued_at
    return item


def _mixed_batch(app: kqueue.App) -> list[WorkItem]:
    at = {"kq-enqueued-at": str(SETTLED_AT - 10).encode()}  # exactly on the 10 ms latency bound
    return [
        _item(app, 0, "send", 0.001, at),  # exactly on the first run-time bound
        _item(app, 1, "send", 0.0004, {}, decoded_enqueued_at=SETTLED_AT - 50),  # read while decoding
        _item(app, 2, "resize", 2.5, {"kq-enqueued-at": b"1700000000000"}),
        _item(app, 3, "send", None, {"kq-enqueued-at": b"not a number"}),
        _item(app, 4, "resize", 0.3, {}),  # no enqueue time at all: no latency
        _item(app, 5, "send", 0.02, {"kq-enqueued-at": str(SETTLED_AT + 5_000).encode()}),  # a clock ahead
        _item(app, 6, "send", 400.0, {"kq-enqueued-at": b"-12"}),
    ]


def test_completions_read_as_the_events_completed_event_builds() -> None:
    app = _app()
    items = _mixed_batch(app)
    completions = Completions(items, SETTLED_AT)
    built = list(completions)
    assert len(completions) == len(items) == len(built)
    for item, event in zip(items, built, strict=True):
        expected = completed_event(item, SETTLED_AT)
        assert (event.outcome, event.task_type, event.offset, event.run_seconds, event.enqueued_at_ms,
                event.settled_at_ms) == (expected.outcome, expected.task_type, expected.offset,
                                         expected.run_seconds, expected.enqueued_at_ms, expected.settled_at_ms)
    assert completions[2].task_type == "resize" and completions[-1].offset == 6
    assert [e.offset for e in completions[1:3]] == [1, 2]
    assert built[1].enqueued_at_ms == SETTLED_AT - 50  # the decoder's reading, not the (empty) headers


def test_the_metrics_fast_path_exposes_exactly_what_events_one_by_one_do() -> None:
    app = _app()
    batch, one_by_one = MetricsMiddleware(app, CollectorRegistry()), MetricsMiddleware(app, CollectorRegistry())
    batch.on_settle_many(Completions(_mixed_batch(app), SETTLED_AT))
    for item in _mixed_batch(app):
        one_by_one.on_settle(completed_event(item, SETTLED_AT))
    batch.flush()
    one_by_one.flush()
    def exposed(registry: CollectorRegistry) -> list[str]:  # less the series' creation times
        return [line for line in generate_latest(registry).decode().splitlines() if "_created" not in line]

    assert exposed(batch.registry) == exposed(one_by_one.registry)
    value = batch.registry.get_sample_value
    assert value("kqueue_tasks_total", {"queue": "email", "task": "send", "outcome": "completed"}) == 5
    assert value("kqueue_tasks_total", {"queue": "email", "task": "resize", "outcome": "completed"}) == 2
    # Latency from the three readable enqueue times of `send` (the clock ahead counts as 0 s).
    assert value("kqueue_task_latency_seconds_count",
                 {"queue": "email", "task": "send", "outcome": "completed"}) == 3
    assert value("kqueue_task_latency_seconds_bucket",
                 {"queue": "email", "task": "send", "outcome": "completed", "le": "0.01"}) == 2


def test_on_settle_many_hands_each_event_to_on_settle_and_a_failing_one_stops_no_other(
        caplog: pytest.LogCaptureFixture) -> None:
    seen: list[int] = []

    class Picky(kqueue.Middleware):
        def on_settle(self, event: SettleEvent) -> None:
            if event.offset == 1:
                raise RuntimeError("a buggy hook")
            seen.append(event.offset)

    app = _app()
    hooks = Hooks([Picky()])
    with caplog.at_level(logging.ERROR, logger="kqueue.middleware"):
        hooks.emit(hooks.settle, Completions(_mixed_batch(app)[:4], SETTLED_AT))
    assert seen == [0, 2, 3]
    assert "a buggy hook" in caplog.text


def test_a_middleware_may_take_whole_batches_only() -> None:
    batches: list[int] = []

    class Counter(kqueue.Middleware):
        def on_settle_many(self, events: Sequence[SettleEvent]) -> None:
            batches.append(len(events))

    app = _app()
    hooks = Hooks([Counter()])
    assert len(hooks.settle) == 1
    hooks.emit(hooks.settle, Completions(_mixed_batch(app), SETTLED_AT))
    hooks.emit(hooks.settle, [completed_event(_mixed_batch(app)[0], SETTLED_AT)])
    assert batches == [7, 1]
    assert Hooks([kqueue.Middleware()]).settle == []  # nothing overridden: nothing called


def test_the_lifecycle_log_builds_no_completion_events_while_debug_is_off(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    built: list[int] = []
    original = worker_events.completed_event

    def counting(item: WorkItem, now_ms: int) -> SettleEvent:
        built.append(item.offset)
        return original(item, now_ms)

    monkeypatch.setattr(worker_events, "completed_event", counting)
    app = _app()
    log = LifecycleLog()
    with caplog.at_level(logging.INFO, logger="kqueue.task"):  # the default: completions are summed, not lines
        log.on_settle_many(Completions(_mixed_batch(app), SETTLED_AT))
    assert built == [] and "task completed" not in caplog.text
    with caplog.at_level(logging.DEBUG, logger="kqueue.task"):
        log.on_settle_many(Completions(_mixed_batch(app), SETTLED_AT))
    assert built == list(range(7)) and caplog.text.count("task completed") == 7


@pytest.mark.parametrize(("raw", "expected"), [
    ({"kq-enqueued-at": b"1700000000000"}, 1_700_000_000_000),
    ({"kq-enqueued-at": "1700000000000"}, 1_700_000_000_000),
    ([("kq-enqueued-at", b"5"), ("kq-enqueued-at", b"7")], 7),  # as Kafka gives them: the last wins
    ({"kq-enqueued-at": b"soon"}, None),
    ({"kq-enqueued-at": b""}, None),
    ({"kq-enqueued-at": None}, None),
    ({"kq-enqueued-at": b"-5"}, None),
    ({"kq-enqueued-at": b"0"}, None),
    ({"kq-enqueued-at": b"9" * 5000}, None),  # past int()'s digit limit
    ({}, None),
    (None, None),
])
def test_enqueued_at_reads_only_a_positive_number(raw: object, expected: int | None) -> None:
    assert enqueued_at_ms(raw) == expected  # type: ignore[arg-type]


class _Record:
    """The parts of a confluent-kafka Message the decoder reads."""

    def __init__(self, headers: list[tuple[str, bytes]]) -> None:
        self._headers = headers

    def topic(self) -> str:
        return "email"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return 3

    def key(self) -> bytes:
        return b"k"

    def value(self) -> bytes:
        return b"{}"

    def headers(self) -> list[tuple[str, bytes]]:
        return self._headers


def test_the_decoder_reads_the_enqueue_time_only_when_asked() -> None:
    app = _app()
    headers = [("kq-type", b"send"), ("kq-content-type", b"application/json"), ("kq-enqueued-at", b"1234")]
    listened, quiet = Decoder(app, read_enqueued_at=True), Decoder(app)
    item, failure = listened.decode(_Record(headers))  # type: ignore[arg-type]
    assert failure is None and item.enqueued_at_ms == 1234
    item, failure = quiet.decode(_Record(headers))  # type: ignore[arg-type]
    assert failure is None and item.enqueued_at_ms == 0
    junk = [*headers[:2], ("kq-enqueued-at", b"yesterday")]
    item, failure = listened.decode(_Record(junk))  # type: ignore[arg-type]
    assert failure is None and item.enqueued_at_ms == 0  # no latency for it, and the task still runs


def test_a_worker_process_freezes_its_start_up_heap_and_collects_young_objects_less_often() -> None:
    probe = ("import gc; from kqueue.worker.heap import settle_worker_heap, YOUNG_THRESHOLD; "
             "before = gc.get_freeze_count(); settle_worker_heap(); "
             "print(before, gc.get_freeze_count() > 1000, gc.get_threshold()[0] == YOUNG_THRESHOLD)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["0", "True", "True"]
