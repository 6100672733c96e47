"""Tracing without a broker: the tracestate link, W3C extraction/injection, the span shape through the
hooks called directly, the bound on open spans, and when App turns tracing on by itself."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanContext, SpanKind, StatusCode, TraceFlags, TraceState
from opentelemetry.util._once import Once

import kqueue
from kqueue.core.records import Settlement
from kqueue.observe import tracing
from kqueue.observe.tracing import (
    TRACEPARENT,
    TRACESTATE,
    TracingMiddleware,
    extract_parent,
    previous_attempt,
    trace_headers,
    tracing_middleware,
    with_previous_attempt,
)
from kqueue.sdk.middleware import EnqueueEvent, Hooks, PartitionEvent, SettleEvent, TickEvent
from kqueue.worker.runner import Runner
from kqueue.worker.work import WorkItem

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"
FOREIGN = f"00-{TRACE_ID}-{SPAN_ID}-01"  # as a Java or Go producer's instrumentation writes it


# -- tracestate (pure) -----------------------------------------------------------------------------
def test_previous_attempt_goes_in_front_and_replaces_an_older_one() -> None:
    assert with_previous_attempt(None, 0xABC) == "kqueue=0000000000000abc"
    state = with_previous_attempt("congo=t61rcWkgMzE,kqueue=0000000000000001,rojo=00f067aa0ba902b7", 0xFF)
    assert state == "kqueue=00000000000000ff,congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
    assert previous_attempt(state) == 0xFF


def test_tracestate_stays_valid_w3c() -> None:
    # invalid members dropped, duplicates keep the first, at most 32 members, parsable by OpenTelemetry
    messy = ",".join(["UPPER=x", "ok=1", "ok=2", " spaced=y ", "bad=a=b", "no_value=", *[f"v{i}=z" for i in range(40)]])
    state = with_previous_attempt(messy, 7)
    members = state.split(",")
    assert len(members) == 32 and members[0] == "kqueue=0000000000000007"
    assert "ok=1" in members and "ok=2" not in members and "spaced=y" in members
    assert not any(m.startswith(("UPPER", "bad", "no_value")) for m in members)
    assert TraceState.from_header([state]).get("kqueue") == "0000000000000007"
    assert len(TraceState.from_header([state])) == 32  # from_header drops everything if one member is invalid


def test_previous_attempt_ignores_what_is_not_a_span_id() -> None:
    assert previous_attempt(None) is None
    assert previous_attempt("other=1") is None
    assert previous_attempt("kqueue=0000000000000000") is None
    assert previous_attempt("kqueue=xyz") is None
    assert previous_attempt("a=1, kqueue=00f067aa0ba902b7") == int(SPAN_ID, 16)


# -- W3C extraction / injection ---------------------------------------------------------------------
def test_foreign_traceparent_is_extracted_and_our_entry_left_out() -> None:
    parent = extract_parent({TRACEPARENT: FOREIGN, TRACESTATE: "kqueue=0000000000000001,congo=t61"})
    assert parent is not None
    assert (f"{parent.trace_id:032x}", f"{parent.span_id:016x}") == (TRACE_ID, SPAN_ID)
    assert parent.is_remote and parent.trace_flags.sampled
    assert dict(parent.trace_state) == {"congo": "t61"}
    assert extract_parent({}) is None
    assert extract_parent({TRACEPARENT: "00-" + "0" * 32 + "-00f067aa0ba902b7-01"}) is None
    assert extract_parent({TRACEPARENT: "garbage"}) is None


def test_injection_round_trips() -> None:
    context = SpanContext(int(TRACE_ID, 16), int(SPAN_ID, 16), False, TraceFlags(1), TraceState([("congo", "t")]))
    headers = trace_headers(context)
    assert headers == {TRACEPARENT: FOREIGN, TRACESTATE: "congo=t"}
    back = extract_parent(headers)
    assert back is not None and (back.trace_id, back.span_id, back.trace_state) == (
        context.trace_id, context.span_id, context.trace_state)


# -- the hooks, called the way the worker calls them ---------------------------------------------
@pytest.fixture()
def spans() -> Iterator[tuple[TracingMiddleware, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield TracingMiddleware(provider), exporter
    provider.shutdown()


def _ctx(headers: dict[str, str], attempt: int = 1, offset: int = 5) -> kqueue.TaskContext:
    return kqueue.TaskContext("t-1", "job", "q", b"k", attempt, 3, "q", 0, offset, None, headers)


def _settle(outcome: Settlement, offset: int = 5, attempt: int = 1, error: str | None = None,
            destination: str | None = None, tier: str | None = None, ran: bool = True) -> SettleEvent:
    return SettleEvent(outcome, "t-1", "job", "q", "q", 0, offset, b"k", attempt, error, error, None,
                       1.0 if ran else None, 0.1, 0, destination, tier)


def _named(exporter: InMemorySpanExporter, prefix: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name.startswith(prefix)]


def test_attempts_are_children_of_the_send_span_and_linked(
        spans: tuple[TracingMiddleware, InMemorySpanExporter]) -> None:
    middleware, exporter = spans
    headers: list[tuple[str, bytes]] = [("kq-id", b"t-1")]
    middleware.on_enqueue(EnqueueEvent("t-1", "job", "q", "q", b"k", headers))
    record = {name: value.decode() for name, value in headers}
    first = _ctx(record)
    middleware.before_run(first)
    assert trace.get_current_span().is_recording()  # the handler's own spans nest under the attempt
    middleware.after_run(first, ValueError("boom"), 0.01)
    assert not trace.get_current_span().is_recording()
    assert _named(exporter, "process") == []  # open until settled
    middleware.on_settle(_settle(Settlement.RETRIED, error="ValueError", destination="q.delay.1s", tier="1s"))
    second = _ctx(dict(record), attempt=2, offset=9)  # the retry carries the headers after_run left
    middleware.before_run(second)
    middleware.after_run(second, None, 0.01)
    middleware.on_settle(_settle(Settlement.COMPLETED, offset=9, attempt=2))

    [send] = _named(exporter, "send q")
    one, two = _named(exporter, "process q")
    assert send.kind is SpanKind.PRODUCER and one.kind is SpanKind.CONSUMER
    assert send.attributes is not None and send.attributes["messaging.kafka.message.key"] == "k"
    assert one.parent is not None and two.parent is not None
    assert one.parent.span_id == two.parent.span_id == send.context.span_id
    assert [link.context.span_id for link in two.links] == [one.context.span_id] and not one.links
    assert [e.name for e in one.events] == ["picked_up", "started", "finished", "exception", "retried"]
    assert one.events[-1].attributes == {"kqueue.retry.tier": "1s", "kqueue.destination": "q.delay.1s"}
    assert one.status.status_code is StatusCode.ERROR and two.status.status_code is StatusCode.UNSET
    assert [e.name for e in two.events][-1] == "completed"
    assert record[TRACEPARENT].split("-")[2] == f"{send.context.span_id:016x}"  # untouched: the send stays parent


def test_send_span_is_a_child_of_the_callers_span(spans: tuple[TracingMiddleware, InMemorySpanExporter]) -> None:
    middleware, exporter = spans
    own = [("kq-id", b"t-2"), (TRACEPARENT, FOREIGN.encode())]
    with middleware.tracer.start_as_current_span("request") as request:
        middleware.on_enqueue(EnqueueEvent("t-1", "job", "q", "q", None, headers := [("kq-id", b"t-1")]))
        middleware.on_enqueue(EnqueueEvent("t-2", "job", "q", "q", None, own))
    [send] = _named(exporter, "send")  # none for the record that had a traceparent of its own
    assert send.parent is not None and send.parent.span_id == request.get_span_context().span_id
    assert own == [("kq-id", b"t-2"), (TRACEPARENT, FOREIGN.encode())]
    assert [name for name, _ in headers] == ["kq-id", TRACEPARENT]  # no tracestate: the span has none


def test_record_without_traceparent_joins_the_first_attempts_trace(
        spans: tuple[TracingMiddleware, InMemorySpanExporter]) -> None:
    middleware, exporter = spans
    headers: dict[str, str] = {}
    first = _ctx(headers)
    middleware.before_run(first)
    middleware.after_run(first, RuntimeError("x"), 0.01)
    middleware.on_settle(_settle(Settlement.DEAD_LETTERED, error="RuntimeError", destination="q.dlq"))
    [span] = _named(exporter, "process")
    assert span.parent is None
    parent = extract_parent(headers)  # what the dead letter (or a retry) now carries
    assert parent is not None and parent.span_id == span.context.span_id
    assert previous_attempt(headers[TRACESTATE]) == span.context.span_id
    assert span.events[-1].name == "dead_lettered" and span.status.description == "RuntimeError"


def test_record_that_never_ran_gets_a_short_span(spans: tuple[TracingMiddleware, InMemorySpanExporter]) -> None:
    middleware, exporter = spans
    middleware.on_tick(TickEvent("pod-7", "grp", 8, 0, 0, (), "", 0.0, False))
    middleware.on_settle(_settle(Settlement.DEAD_LETTERED, error="DecodeError", destination="q.dlq", ran=False))
    middleware.on_settle(_settle(Settlement.DELIVERED, offset=6, ran=False))  # tier moves: no span
    [span] = _named(exporter, "process")
    assert [e.name for e in span.events] == ["dead_lettered"]
    assert span.attributes is not None and span.attributes["kqueue.worker"] == "pod-7"
    assert span.attributes["messaging.consumer.group.name"] == "grp"


def test_handler_spans_nest_under_the_attempt_sync_and_async() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    middleware = TracingMiddleware(provider)
    app = kqueue.App("x", "127.0.0.1:1")
    inner = trace.get_tracer("handler", tracer_provider=provider)  # the handler's own instrumentation

    @app.task(queue="q")
    def sync_job(payload: Any) -> None:
        with inner.start_as_current_span("sync work"):
            raise ValueError("no")

    @app.task(queue="q")
    async def async_job(payload: Any) -> None:
        await asyncio.sleep(0)
        with inner.start_as_current_span("async work"):
            pass

    runner = Runner(Hooks([middleware]))
    items = []
    for offset, name in enumerate(("sync_job", "async_job")):
        item = WorkItem("q", 0, offset, None, b"{}", {}, "q", app.tasks[("q", name)], {})
        items.append(item)
    assert runner.run_sync(items[0]) is not None
    assert asyncio.run(runner.run_async(items[1])) is None
    for item in items:
        middleware.on_settle(_settle(Settlement.COMPLETED, offset=item.offset))
    assert sorted(s.name for s in exporter.get_finished_spans()) == ["async work", "process q", "process q",
                                                                     "sync work"]
    by_name = {s.name: s for s in exporter.get_finished_spans()}
    attempts = {s.attributes["messaging.kafka.offset"]: s for s in exporter.get_finished_spans()
                if s.name == "process q" and s.attributes}
    for offset, work in ((0, "sync work"), (1, "async work")):
        child = by_name[work]
        assert child.parent is not None and child.parent.span_id == attempts[offset].context.span_id
    assert previous_attempt(items[0].headers[TRACESTATE]) == attempts[0].context.span_id  # rides on the retry
    assert TRACESTATE not in items[1].headers


def test_open_spans_are_bounded(spans: tuple[TracingMiddleware, InMemorySpanExporter]) -> None:
    middleware, exporter = spans
    middleware.max_open = 3
    for offset in range(5):
        ctx = _ctx({}, offset=offset)
        middleware.before_run(ctx)
        middleware.after_run(ctx, None, 0.0)
    assert middleware.open_spans() == 3
    ended = _named(exporter, "process")
    assert [s.attributes["messaging.kafka.offset"] for s in ended if s.attributes] == [0, 1]  # the oldest
    assert all(s.events[-1].name == "unsettled" for s in ended)
    middleware.on_partitions(PartitionEvent("lost", [("q", 0)]))
    assert middleware.open_spans() == 0 and len(_named(exporter, "process")) == 5
    ctx = _ctx({}, offset=7)
    middleware.before_run(ctx)
    middleware.after_run(ctx, None, 0.0)
    middleware.max_open_seconds = 0.0
    middleware.on_tick(TickEvent("w", "g", 1, 0, 0, (), "", 0.0, False))  # past their age
    assert middleware.open_spans() == 0


# -- turning it on ----------------------------------------------------------------------------------
@pytest.fixture()
def no_global_provider(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A process without a global tracer provider; whatever a test sets is undone afterwards."""
    monkeypatch.setattr(trace, "_TRACER_PROVIDER_SET_ONCE", Once())
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", None)
    monkeypatch.setattr(tracing, "_env_provider", [])
    for name in ("OTEL_TRACES_EXPORTER", "OTEL_SDK_DISABLED", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES"):
        monkeypatch.delenv(name, raising=False)
    yield
    for built in tracing._env_provider:
        if isinstance(built, TracerProvider):
            built.shutdown()


@pytest.mark.usefixtures("no_global_provider")
def test_off_unless_opentelemetry_is_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    assert tracing_middleware() is None
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    assert tracing_middleware() is None
    assert not any(isinstance(m, TracingMiddleware) for m in kqueue.App("x", "127.0.0.1:1").hooks.middleware)


@pytest.mark.usefixtures("no_global_provider")
def test_console_exporter_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    middleware = tracing_middleware()
    assert middleware is not None
    [provider] = tracing._env_provider
    assert isinstance(provider, TracerProvider) and trace.get_tracer_provider() is provider
    assert provider.resource.attributes["service.name"] == "kqueue"
    app = kqueue.App("x", "127.0.0.1:1")
    assert sum(isinstance(m, TracingMiddleware) for m in app.hooks.middleware) == 1
    own = TracingMiddleware(provider)
    assert kqueue.App("x", "127.0.0.1:1", middleware=[own]).hooks.middleware == [own]  # never two


@pytest.mark.usefixtures("no_global_provider")
def test_service_name_and_global_provider_from_code(monkeypatch: pytest.MonkeyPatch) -> None:
    in_code = TracerProvider()
    trace.set_tracer_provider(in_code)
    middleware = tracing_middleware()  # no OTEL_TRACES_EXPORTER: the provider configured in code
    assert middleware is not None and tracing._env_provider == []
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "billing")
    assert tracing_middleware() is not None
    [provider] = tracing._env_provider
    assert isinstance(provider, TracerProvider) and provider.resource.attributes["service.name"] == "billing"
    assert trace.get_tracer_provider() is in_code  # an existing global provider is left alone
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert tracing_middleware() is None
