"""Traces: OpenTelemetry spans for each enqueue and each attempt, as a middleware (messaging semconv).

One trace per task: a PRODUCER span "send <queue>" on enqueue, injected as W3C `traceparent`, and one
CONSUMER span "process <queue>" per attempt, a child of the record's `traceparent` (kqueue's or any
W3C producer's). A failed attempt leaves its span id in the task's `tracestate` (`kqueue=<span id>`),
which travels with the retry or dead letter, so the next attempt's span links to it. An attempt's
span stays open until its outcome is decided (retried, dead-lettered, completed) on the poll loop.
On when OpenTelemetry is configured (`tracing_middleware`); otherwise not installed, so it costs nothing.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, NonRecordingSpan, Span, SpanContext, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from kqueue.core import names
from kqueue.core.headers import header_map
from kqueue.core.records import Settlement
from kqueue.sdk.context import TaskContext
from kqueue.sdk.middleware import EnqueueEvent, Middleware, PartitionEvent, SettleEvent, TickEvent

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter

log = logging.getLogger("kqueue.tracing")

TRACEPARENT: Final = names.H_TRACEPARENT
TRACESTATE: Final = names.H_TRACESTATE
TRACESTATE_KEY: Final = "kqueue"  # tracestate entry: the span id (16 hex) of the task's previous attempt
MAX_TRACESTATE_MEMBERS: Final = 32  # W3C
MAX_OPEN_SPANS: Final = 10_000  # attempt spans waiting for their settlement, at most
MAX_OPEN_SECONDS: Final = 600.0  # ... and for at most this long (their partition was lost, or revoked)
TRACER_NAME: Final = "kqueue"

# Attribute names: OpenTelemetry messaging semantic conventions, then kqueue's own.
SYSTEM, OPERATION_TYPE, OPERATION_NAME = "messaging.system", "messaging.operation.type", "messaging.operation.name"
DESTINATION, PARTITION = "messaging.destination.name", "messaging.destination.partition.id"
CONSUMER_GROUP, MESSAGE_ID = "messaging.consumer.group.name", "messaging.message.id"
KAFKA_KEY, KAFKA_OFFSET, ERROR_TYPE = "messaging.kafka.message.key", "messaging.kafka.offset", "error.type"
TASK_TYPE, ATTEMPT, MAX_ATTEMPTS, WORKER = "kqueue.task.type", "kqueue.attempt", "kqueue.max_attempts", "kqueue.worker"
OUTCOME, RETRY_TIER, ROUTED_TO = "kqueue.outcome", "kqueue.retry.tier", "kqueue.destination"
LINK_KIND, REASON = "kqueue.link", "kqueue.reason"
# Span events of an attempt's life.
PICKED_UP, STARTED, FINISHED = "picked_up", "started", "finished"
RETRIED, DEAD_LETTERED, COMPLETED, UNSETTLED = "retried", "dead_lettered", "completed", "unsettled"

_PROPAGATOR = TraceContextTextMapPropagator()
_KEY = r"(?:[a-z][_0-9a-z\-*/]{0,255}|[a-z0-9][_0-9a-z\-*/]{0,240}@[a-z][_0-9a-z\-*/]{0,13})"
_MEMBER = re.compile(_KEY + r"=[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]")
_SPAN_ID = re.compile(r"[0-9a-f]{16}")


# -- tracestate: the link between attempts (pure) ------------------------------------------------------
def _members(tracestate: str | None) -> list[tuple[str, str]]:
    """The valid W3C members of a tracestate header, first of each key kept, in order."""
    out: dict[str, str] = {}
    for member in (tracestate or "").split(","):
        member = member.strip(" \t")
        if _MEMBER.fullmatch(member):
            key, value = member.split("=", 1)
            out.setdefault(key, value)
    return list(out.items())


def with_previous_attempt(tracestate: str | None, span_id: int) -> str:
    """`tracestate` with `kqueue=<span id>` in front (an older kqueue entry replaced, the others kept)."""
    others = [f"{k}={v}" for k, v in _members(tracestate) if k != TRACESTATE_KEY]
    return ",".join([f"{TRACESTATE_KEY}={span_id:016x}", *others][:MAX_TRACESTATE_MEMBERS])


def previous_attempt(tracestate: str | None) -> int | None:
    """The span id a failed earlier attempt left in `tracestate`, if any."""
    for key, value in _members(tracestate):
        if key == TRACESTATE_KEY and _SPAN_ID.fullmatch(value) and int(value, 16):
            return int(value, 16)
    return None


def extract_parent(headers: Mapping[str, str]) -> SpanContext | None:
    """The remote parent a record's `traceparent`/`tracestate` name (our own tracestate entry removed)."""
    parent = trace.get_current_span(_PROPAGATOR.extract(headers)).get_span_context()
    if not parent.is_valid:
        return None
    if TRACESTATE_KEY in parent.trace_state:
        parent = SpanContext(parent.trace_id, parent.span_id, True, parent.trace_flags,
                             parent.trace_state.delete(TRACESTATE_KEY))
    return parent


def trace_headers(span_context: SpanContext) -> dict[str, str]:
    """`traceparent` (and `tracestate` if any) naming `span_context` as the parent."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, trace.set_span_in_context(NonRecordingSpan(span_context)))
    return carrier


def _text(key: bytes | None) -> str | None:
    try:
        return key.decode("utf-8") if key is not None else None
    except UnicodeDecodeError:
        return None


@dataclass(slots=True)
class _Attempt:
    span: Span
    opened: float  # time.monotonic()
    token: object | None = None  # the attached context, detached in after_run
    parented: bool = False  # the record named a valid parent


class TracingMiddleware(Middleware):
    """OpenTelemetry spans for enqueues and attempts; see the module docstring for the shape."""

    def __init__(self, tracer_provider: trace.TracerProvider | None = None, *, max_open: int = MAX_OPEN_SPANS,
                 max_open_seconds: float = MAX_OPEN_SECONDS) -> None:
        from kqueue import __version__

        self.tracer = trace.get_tracer(TRACER_NAME, __version__, tracer_provider)
        self.max_open = max_open
        self.max_open_seconds = max_open_seconds
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}"  # until on_tick tells the worker's own
        self.group: str | None = None
        self._lock = threading.Lock()
        self._running: dict[int, _Attempt] = {}  # by id(ctx): before_run -> after_run
        self._open: OrderedDict[tuple[str, int, int], _Attempt] = OrderedDict()  # after_run -> on_settle

    # -- producing ------------------------------------------------------------------------------------
    def on_enqueue(self, event: EnqueueEvent) -> None:
        try:  # raising here would stop the enqueue: tracing never does
            self._send_span(event)
        except Exception:
            log.exception("could not trace the enqueue of task %s", event.task_id)

    def _send_span(self, event: EnqueueEvent) -> None:
        present = {name for name, _ in event.headers}
        if TRACEPARENT in present:  # the caller propagates a context of its own
            return
        attributes: dict[str, AttributeValue] = {SYSTEM: "kafka", OPERATION_TYPE: "send", OPERATION_NAME: "send",
                                                 DESTINATION: event.topic, MESSAGE_ID: event.task_id,
                                                 TASK_TYPE: event.task_type}
        if (key := _text(event.key)) is not None:
            attributes[KAFKA_KEY] = key
        span = self.tracer.start_span(f"send {event.queue}", kind=SpanKind.PRODUCER, attributes=attributes)
        span.end()
        for name, value in trace_headers(span.get_span_context()).items():
            if name not in present:
                event.headers.append((name, value.encode()))

    # -- running (handler thread or event loop) -----------------------------------------------------
    def before_run(self, ctx: TaskContext) -> None:
        try:  # raising here would fail the attempt: tracing never does
            attempt = self._start(ctx)
            attempt.token = otel_context.attach(trace.set_span_in_context(attempt.span))  # the handler's spans nest
            attempt.span.add_event(STARTED)
        except Exception:
            log.exception("could not start the span of task %s", ctx.task_id)
            return
        with self._lock:
            self._running[id(ctx)] = attempt

    def _start(self, ctx: TaskContext, started: float | None = None) -> _Attempt:
        parent = extract_parent(ctx.headers)
        previous = previous_attempt(ctx.headers.get(TRACESTATE)) if parent is not None else None
        links = [] if parent is None or previous is None else [
            Link(SpanContext(parent.trace_id, previous, True, parent.trace_flags), {LINK_KIND: "previous_attempt"})]
        start_ns = int(started * 1e9) if started is not None else None
        span = self._process_span(ctx.queue, ctx.topic, ctx.partition, ctx.offset, ctx.task_id, ctx.task_type,
                                  ctx.attempt, ctx.key, parent, links, start_ns)
        span.set_attribute(MAX_ATTEMPTS, ctx.max_attempts)
        span.add_event(PICKED_UP, {WORKER: self.worker_id}, timestamp=start_ns)
        return _Attempt(span, time.monotonic(), parented=parent is not None)

    def _process_span(self, queue: str, topic: str, partition: int, offset: int, task_id: str,
                      task_type: str | None, attempt: int, key: bytes | None, parent: SpanContext | None,
                      links: list[Link] | None = None, start_ns: int | None = None) -> Span:
        attributes: dict[str, AttributeValue] = {
            SYSTEM: "kafka", OPERATION_TYPE: "process", OPERATION_NAME: "process", DESTINATION: topic,
            PARTITION: str(partition), KAFKA_OFFSET: offset, MESSAGE_ID: task_id, ATTEMPT: attempt,
            WORKER: self.worker_id,
        }
        for name, value in ((TASK_TYPE, task_type), (KAFKA_KEY, _text(key)), (CONSUMER_GROUP, self.group)):
            if value is not None:
                attributes[name] = value
        context = trace.set_span_in_context(NonRecordingSpan(parent)) if parent is not None else Context()
        return self.tracer.start_span(f"process {queue}", context, SpanKind.CONSUMER, attributes, links,
                                      start_time=start_ns)

    def after_run(self, ctx: TaskContext, error: BaseException | None, seconds: float) -> None:
        with self._lock:
            attempt = self._running.pop(id(ctx), None)
        if attempt is None:  # a middleware before ours failed the attempt: its span starts now, back-dated
            attempt = self._start(ctx, time.time() - seconds)
        elif attempt.token is not None:
            try:
                otel_context.detach(attempt.token)  # type: ignore[arg-type]
            except Exception:  # never fail the attempt over context bookkeeping
                log.debug("could not detach the attempt's context", exc_info=True)
        span = attempt.span
        if error is None:
            span.add_event(FINISHED, {OUTCOME: "ok"})
        else:
            error_type = type(error).__name__
            span.add_event(FINISHED, {OUTCOME: "error", ERROR_TYPE: error_type})
            span.record_exception(error)
            span.set_attribute(ERROR_TYPE, error_type)
            span.set_status(Status(StatusCode.ERROR, error_type))
            self._pass_on(ctx.headers, span.get_span_context(), attempt.parented)
        self._hold(ctx.topic, ctx.partition, ctx.offset, attempt)

    @staticmethod
    def _pass_on(headers: dict[str, str], span_context: SpanContext, parented: bool) -> None:
        """Leave this attempt's span id for the next attempt (and the dead letter) in `tracestate`.

        A record without a usable traceparent gets this span as its parent, so later attempts join
        this attempt's trace."""
        if not parented:
            headers.pop(TRACESTATE, None)
            headers.update(trace_headers(span_context))
        headers[TRACESTATE] = with_previous_attempt(headers.get(TRACESTATE), span_context.span_id)

    # -- settling (poll loop) -----------------------------------------------------------------------
    def _hold(self, topic: str, partition: int, offset: int, attempt: _Attempt) -> None:
        key = (topic, partition, offset)
        with self._lock:
            stale = self._open.pop(key, None)
            self._open[key] = attempt
            dropped = self._evict(attempt.opened)
        if stale is not None:
            dropped.append(stale)
        self._end_unsettled(dropped, "not settled by this worker")

    def _evict(self, now: float) -> list[_Attempt]:
        """Take the oldest open spans above the bound or past their age (call with the lock held)."""
        out = []
        while self._open:
            _, oldest = next(iter(self._open.items()))
            if len(self._open) <= self.max_open and now - oldest.opened <= self.max_open_seconds:
                break
            out.append(self._open.popitem(last=False)[1])
        return out

    @staticmethod
    def _end_unsettled(attempts: list[_Attempt], reason: str) -> None:
        for attempt in attempts:
            attempt.span.add_event(UNSETTLED, {REASON: reason})
            attempt.span.end()

    def open_spans(self) -> int:
        """Attempt spans waiting for their settlement."""
        with self._lock:
            return len(self._open)

    def on_settle(self, event: SettleEvent) -> None:
        with self._lock:
            attempt = self._open.pop((event.topic, event.partition, event.offset), None)
        if attempt is None:
            if event.outcome is Settlement.DEAD_LETTERED and event.started_at is None:
                self._never_ran(event)
            return
        span = attempt.span
        if event.outcome is Settlement.RETRIED:
            span.add_event(RETRIED, {RETRY_TIER: event.tier or "", ROUTED_TO: event.destination or ""})
        elif event.outcome is Settlement.DEAD_LETTERED:
            span.add_event(DEAD_LETTERED, {ROUTED_TO: event.destination or "", ERROR_TYPE: event.error_type or ""})
            span.set_status(Status(StatusCode.ERROR, event.error_type))
        elif event.outcome is Settlement.COMPLETED:
            span.add_event(COMPLETED)
        span.end()

    def _never_ran(self, event: SettleEvent) -> None:
        """A record that could not run (undecodable, unknown type): a short span with its dead letter."""
        headers: Mapping[str, str] = header_map(event.raw_headers)
        span = self._process_span(event.queue, event.topic, event.partition, event.offset, event.task_id,
                                  event.task_type, event.attempt, event.key, extract_parent(headers))
        span.set_attribute(ERROR_TYPE, event.error_type or "")
        span.add_event(DEAD_LETTERED, {ROUTED_TO: event.destination or "", ERROR_TYPE: event.error_type or ""})
        span.set_status(Status(StatusCode.ERROR, event.error_type))
        span.end()

    def on_tick(self, event: TickEvent) -> None:
        self.worker_id, self.group = event.worker_id, event.group
        with self._lock:
            dropped = self._evict(time.monotonic())
        self._end_unsettled(dropped, "not settled in time")

    def on_partitions(self, event: PartitionEvent) -> None:
        gone = set(event.partitions) if event.kind != "assigned" else set()
        with self._lock:
            dropped = [self._open.pop(key) for key in [k for k in self._open if (k[0], k[1]) in gone]]
        self._end_unsettled(dropped, f"partition {event.kind}")


# -- turning it on ---------------------------------------------------------------------------------
_env_provider: list[trace.TracerProvider | None] = []  # built once per process from the OTEL_* variables
_env_lock = threading.Lock()


def _exporter(name: str) -> SpanExporter | None:
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter

    if name == "console":
        return ConsoleSpanExporter()
    if name == "otlp":  # the exporter reads OTEL_EXPORTER_OTLP_ENDPOINT, _HEADERS, ... itself
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[import-not-found, unused-ignore]
                OTLPSpanExporter,
            )
        except ImportError:
            log.warning("OTEL_TRACES_EXPORTER=otlp needs the package opentelemetry-exporter-otlp-proto-http "
                        "(pip install opentelemetry-exporter-otlp-proto-http): not exporting to OTLP")
            return None
        return OTLPSpanExporter()  # type: ignore[no-any-return, unused-ignore]
    if name != "none":
        log.warning("OTEL_TRACES_EXPORTER=%s is not supported by kqueue (use console or otlp): ignored", name)
    return None


def _build_provider(exporter_names: str) -> trace.TracerProvider | None:
    """A TracerProvider exporting to OTEL_TRACES_EXPORTER (service.name "kqueue" unless OTEL_SERVICE_NAME
    or OTEL_RESOURCE_ATTRIBUTES say otherwise), made the global one if none was set."""
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    names_ = dict.fromkeys(n.strip().lower() for n in exporter_names.split(",") if n.strip())
    exporters = [e for e in map(_exporter, names_) if e is not None]
    if not exporters:
        return None
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: "kqueue"}))
    provider = TracerProvider(resource=resource)
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        trace.set_tracer_provider(provider)
    return provider


def configured_provider() -> trace.TracerProvider | None:
    """Where kqueue traces to on its own: with OTEL_TRACES_EXPORTER set (not "none"), a provider built
    from the OTEL_* environment once per process; else the global provider if it is an SDK one
    (configured in code); else None: tracing is off."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    exporter_names = os.environ.get("OTEL_TRACES_EXPORTER", "").strip()
    if exporter_names and exporter_names.lower() != "none":
        with _env_lock:
            if not _env_provider:
                _env_provider.append(_build_provider(exporter_names))
        if _env_provider[0] is not None:
            return _env_provider[0]
    from opentelemetry.sdk.trace import TracerProvider

    provider = trace.get_tracer_provider()
    return provider if isinstance(provider, TracerProvider) else None


def tracing_middleware(existing: Sequence[Middleware] = ()) -> TracingMiddleware | None:
    """What `App` installs on its own when OpenTelemetry is configured (`configured_provider`), else
    None; None too if `existing` already has a TracingMiddleware."""
    if any(isinstance(m, TracingMiddleware) for m in existing):
        return None
    provider = configured_provider()
    return TracingMiddleware(provider) if provider is not None else None
