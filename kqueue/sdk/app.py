"""`kqueue.App`: where tasks are registered and enqueued."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

from kqueue.core.codec import AvroSchema, SchemaStore
from kqueue.core.dedup import DEFAULT_IDEMPOTENCY_WINDOW, MAX_WINDOW
from kqueue.core.errors import DeliveryError
from kqueue.core.headers import now_ms
from kqueue.core.names import DEFAULT_DELAY_TIERS, control_topic
from kqueue.core.ratelimit import parse_rate
from kqueue.core.retry import RetryPolicy, Tiers
from kqueue.core.status import TaskStatus
from kqueue.core.topology import queue_topic_specs, system_topic_specs
from kqueue.sdk.middleware import Hooks, Middleware
from kqueue.sdk.task import Handler, TaskDef
from kqueue.transport.admin import KafkaUnavailable, broker_count, ensure_topics, make_admin, unreachable
from kqueue.transport.config import resolve_bootstrap
from kqueue.transport.producer import AcknowledgedProducer

if TYPE_CHECKING:
    from kqueue.control.limits import QueueLimitState
    from kqueue.control.pauses import QueuePause
    from kqueue.sdk.cancel import CancelResult
    from kqueue.sdk.cron import CronEntry


# Middleware every new App adds after the ones it is given, each made from those (None: not now).
# `import kqueue` registers tracing (observe/auto_tracing.py): the SDK itself never imports observe.
DefaultMiddleware = Callable[[Sequence[Middleware]], Middleware | None]
_DEFAULT_MIDDLEWARE: list[DefaultMiddleware] = []


def register_default_middleware(factory: DefaultMiddleware) -> None:
    if factory not in _DEFAULT_MIDDLEWARE:
        _DEFAULT_MIDDLEWARE.append(factory)


class App:
    """A named set of task types sharing one Kafka cluster (and an optional topic prefix)."""

    def __init__(
        self,
        name: str,
        bootstrap_servers: str | None = None,
        *,
        topic_prefix: str = "",
        partitions: int = 6,
        replication: int | None = None,
        schemas_dir: str | Path | None = None,
        producer_config: dict[str, Any] | None = None,
        delay_tiers: Sequence[str] = DEFAULT_DELAY_TIERS,
        retry_policy: RetryPolicy | None = None,
        middleware: Sequence[Middleware] = (),
        enqueue_timeout: float = 10.0,
        api_url: str | None = None,
    ) -> None:
        if enqueue_timeout <= 0:
            raise ValueError("enqueue_timeout must be a positive number of seconds")
        self.name = name
        self.api_url = api_url  # the status view (`kqueue api`) app.status asks; else KQUEUE_API_URL
        # The longest enqueue() blocks: reaching Kafka to create a queue's topics on its first use, or
        # waiting for room in the send buffer while Kafka is slow or away. Past it: DeliveryError.
        self.enqueue_timeout = enqueue_timeout
        self.bootstrap_servers = resolve_bootstrap(bootstrap_servers)
        self.topic_prefix = topic_prefix
        self.partitions = partitions
        self.tiers = Tiers.parse(delay_tiers)
        self.retry_policy = retry_policy or RetryPolicy()
        self.replication = replication
        self.schemas = SchemaStore()
        self.schemas_dir = Path(schemas_dir) if schemas_dir is not None else None
        if self.schemas_dir is not None:
            self.schemas.load_dir(self.schemas_dir)
        self._producer_config = producer_config or {}
        self._producer: AcknowledgedProducer | None = None
        self._ensured: set[str] = set()
        self._system_ready = False
        self._lock = threading.Lock()
        self.tasks: dict[tuple[str, str], TaskDef] = {}
        self._ordered_queues: dict[str, bool | Literal["follow"]] = {}  # order_retries: every type of the queue
        self.cron_entries: dict[str, CronEntry] = {}  # schedules by name (`cron`, sdk/cron.py)
        self.hooks = Hooks(middleware)
        for default in _DEFAULT_MIDDLEWARE:  # e.g. tracing when OpenTelemetry is configured
            extra = default(self.hooks.middleware)
            if extra is not None:
                self.hooks = Hooks([*self.hooks.middleware, extra])

    def add_middleware(self, middleware: Middleware) -> None:
        """Add a middleware after the others (workers started later see it)."""
        self.hooks = Hooks([*self.hooks.middleware, middleware])

    # -- registration ------------------------------------------------------------------------------
    @overload
    def task(self, fn: Handler) -> TaskDef: ...

    @overload
    def task(
        self, fn: None = None, *, queue: str = "default", name: str | None = None, max_attempts: int = 5,
        timeout: float | None = None, schema: str | Path | dict[str, Any] | None = None,
        backoff: RetryPolicy | None = None, keep_result: bool = False, unique_for: float | None = None,
        idempotency_window: float = DEFAULT_IDEMPOTENCY_WINDOW, interruptible: bool = False,
        rate_limit: str | None = None, ordered: bool | Literal["follow"] = False,
    ) -> Callable[[Handler], TaskDef]: ...

    def task(
        self, fn: Handler | None = None, *, queue: str = "default", name: str | None = None,
        max_attempts: int = 5, timeout: float | None = None, schema: str | Path | dict[str, Any] | None = None,
        backoff: RetryPolicy | None = None, keep_result: bool = False, unique_for: float | None = None,
        idempotency_window: float = DEFAULT_IDEMPOTENCY_WINDOW, interruptible: bool = False,
        rate_limit: str | None = None, ordered: bool | Literal["follow"] = False,
    ) -> TaskDef | Callable[[Handler], TaskDef]:
        """Register a handler as a task type: `@app.task(queue="email", schema="schemas/x.avsc")`.

        max_attempts counts the first run; `backoff` overrides the app's retry policy for this type;
        `timeout` (seconds) fails an attempt that runs longer; `keep_result` sends the handler's
        return value (JSON, up to RESULT_LIMIT bytes) to the status view: `app.status(id).result`.
        `unique_for` (seconds) makes the type unique: a task enqueued while another of the same
        unique key (default: the same payload) is unfinished is settled `cancelled` without running.
        `idempotency_window` (seconds, default 24 h, at most 7 days): how long an idempotency key
        is remembered. `interruptible` (async handlers): a cancel while it runs cancels its coroutine;
        any other handler sees `ctx.cancelled` and may stop early. `rate_limit` ("100/s", "/m", "/h"):
        at most that many starts for the whole consumer group (README, "Rate limits"). `ordered`:
        a retry keeps its key's order: the key's later tasks (of any type) wait, parked, until it
        succeeds or is dead-lettered, then run in their order; `ordered="follow"` dead-letters
        those waiting with it (README, "Ordered retries").
        """
        if ordered not in (True, False, "follow") or (ordered in (0, 1) and type(ordered) is not bool):
            raise ValueError(f"ordered must be True, False or \"follow\", not {ordered!r}")
        rate = parse_rate(rate_limit) if rate_limit is not None else None  # a bad one fails here, at import

        def register(handler: Handler) -> TaskDef:
            task_name = name or handler.__name__
            if (queue, task_name) in self.tasks:
                raise ValueError(f"task {task_name!r} is already registered on queue {queue!r}")
            if max_attempts < 1:
                raise ValueError("max_attempts must be at least 1")
            if timeout is not None and timeout <= 0:
                raise ValueError("timeout must be a positive number of seconds")
            if unique_for is not None and not 0 < unique_for <= MAX_WINDOW:
                raise ValueError(f"unique_for must be between 0 and {MAX_WINDOW:g} seconds")
            if not 0 < idempotency_window <= MAX_WINDOW:
                raise ValueError(f"idempotency_window must be between 0 and {MAX_WINDOW:g} seconds")
            definition = TaskDef(self, handler, queue, task_name, max_attempts, timeout, self._schema(schema),
                                 backoff, keep_result, unique_for, idempotency_window, interruptible, rate,
                                 ordered or self._ordered_queues.get(queue, False))
            if interruptible and not definition.is_async:
                raise ValueError("interruptible=True needs an async handler (a thread cannot be stopped)")
            self.tasks[(queue, task_name)] = definition
            return definition

        return register(fn) if fn is not None else register

    def _schema(self, schema: str | Path | dict[str, Any] | None) -> AvroSchema | None:
        if schema is None:
            return None
        if isinstance(schema, dict):
            return self.schemas.add(AvroSchema.from_dict(schema))
        path = Path(schema)
        if not path.is_absolute() and not path.exists() and self.schemas_dir is not None:
            path = self.schemas_dir / path
        return self.schemas.add(AvroSchema.from_file(path), path.stem)

    def cron(
        self, expression: str, *, tz: str = "UTC", payload: Any = None, catch_up: bool = True,
        name: str | None = None, priority: str = "normal",
    ) -> Callable[[TaskDef], TaskDef]:
        """Enqueue a registered task on a schedule; goes above `@app.task`:

            @app.cron("*/5 * * * *", tz="Europe/Berlin", payload={"report": "sales"})
            @app.task(queue="reports")
            def build_report(payload): ...

        5 fields (minute hour day month weekday), or 6 with seconds first. Each tick is enqueued
        exactly once by whichever scheduler leads (`kqueue consume` runs one; `kqueue cron run` only
        that), with the task id `cron:<name>:<tick epoch seconds>`. `catch_up` (default True): after
        an outage with no scheduler alive, fire the latest missed tick once; False skips them. `name`
        defaults to `queue.task` (give one to schedule a task twice). A bad expression, time zone,
        catch_up or payload raises ValueError here, at import.
        """
        from kqueue.sdk.cron import register_cron

        return register_cron(self, expression, tz=tz, payload=payload, catch_up=catch_up, name=name,
                             priority=priority)

    def order_retries(self, queue: str, follow: bool = False) -> None:
        """Every task type of `queue` (registered before or after) is `ordered=True`, or with
        `follow` `ordered="follow"`, unless it says `ordered=` itself (README, "Ordered retries")."""
        mode: bool | Literal["follow"] = "follow" if follow else True
        self._ordered_queues[queue] = mode
        for (task_queue, _), task in self.tasks.items():
            if task_queue == queue and not task.ordered:
                task.ordered = mode

    # -- lookups -----------------------------------------------------------------------------------
    def queues(self) -> list[str]:
        return sorted({q for q, _ in self.tasks})

    def task_for(self, queue: str, task_type: str | None) -> TaskDef | None:
        """The handler for a record: by kq-type, or the queue's only task type when kq-type is absent."""
        if task_type is not None:
            return self.tasks.get((queue, task_type))
        candidates = [t for (q, _), t in self.tasks.items() if q == queue]
        return candidates[0] if len(candidates) == 1 else None

    # -- Kafka ---------------------------------------------------------------------------------------
    @property
    def producer(self) -> AcknowledgedProducer:
        if self._producer is None:
            with self._lock:
                if self._producer is None:
                    self._producer = AcknowledgedProducer(self.bootstrap_servers, self.enqueue_timeout,
                                                          **self._producer_config)
        return self._producer

    def queue_ensured(self, queue: str) -> bool:
        """Whether this app has already created (or found) the queue's topics."""
        return queue in self._ensured

    def ensure_queue(self, queue: str) -> None:
        """Create the queue's topics on first use (idempotent, safe to race)."""
        if queue in self._ensured:
            return
        with self._lock:
            if queue in self._ensured:
                return
            timeout = self.enqueue_timeout
            admin = make_admin(self.bootstrap_servers)
            try:
                brokers = broker_count(admin, timeout)
                specs = queue_topic_specs(queue, self.partitions, brokers, self.topic_prefix, self.replication,
                                          self.tiers.names)
                specs += system_topic_specs(brokers, self.topic_prefix, replication=self.replication)
                ensure_topics(admin, specs, timeout)
            except KafkaUnavailable as exc:
                raise DeliveryError(unreachable(self.bootstrap_servers, timeout, exc,
                                                f"to set up queue {queue!r}")) from None
            self._ensured.add(queue)

    def cancel(self, task_id: str, *, known: TaskStatus | None = None) -> CancelResult:
        """Cancel a task that has not started: workers settle it as `cancelled` when its turn comes
        (also from a delay tier, and after restarts); a running one sees `ctx.cancelled`.

        Asks the status view (`kqueue api`, as `status` does) first, unless the caller passes the
        status it has just read as `known`. Returns a CancelResult, and raises nothing for an
        unknown or finished id: `.outcome` is `requested` (sent), `unchecked` (sent; the view could
        not be asked), `unknown` (sent anyway: it reaches only a task with this id enqueued before
        now, and expires unused) or `finished` (not sent: already completed, failed or cancelled);
        `str(result)` says it in one line. Blocks until Kafka has the command (DeliveryError if not).
        """
        from kqueue.sdk.cancel import CHECK_TIMEOUT, Lookup, plan_cancel
        from kqueue.sdk.status_client import StatusUnavailable, TaskNotFound, api_url, fetch_status

        looked_up: Lookup
        if known is not None:
            looked_up = known
        else:
            if self._producer is not None:
                self.flush(self.enqueue_timeout)  # this app's own enqueues are in Kafka before the view is asked
            try:
                looked_up = fetch_status(api_url(self.api_url), task_id, timeout=CHECK_TIMEOUT)
            except (TaskNotFound, StatusUnavailable) as exc:
                looked_up = exc
        command, result = plan_cancel(task_id, looked_up, now_ms())
        if command is None:
            return result
        with self._lock:
            if not self._system_ready:
                admin = make_admin(self.bootstrap_servers)
                try:
                    specs = system_topic_specs(broker_count(admin, self.enqueue_timeout), self.topic_prefix,
                                               replication=self.replication)
                    ensure_topics(admin, specs, self.enqueue_timeout)
                except KafkaUnavailable as exc:
                    raise DeliveryError(unreachable(self.bootstrap_servers, self.enqueue_timeout, exc,
                                                    "to cancel a task")) from None
                self._system_ready = True
        self.producer.produce(control_topic(self.topic_prefix), command.encode(), task_id.encode(), [])
        self.flush(self.enqueue_timeout)
        return result

    def pause(self, queue: str, reason: str | None = None) -> QueuePause:
        """Pause a queue: every worker of it stops starting its tasks within about a second (running
        ones finish and commit), also after restarts and in workers started later, until `resume`.
        Enqueueing still works; due retries and scheduled tasks wait in the queue. A queue paused
        already stays paused since then (with `reason`, if given, as its new reason). Returns the
        state (`.as_json()`: queue, paused, since, reason); ValueError for an unknown queue,
        DeliveryError when Kafka cannot take the command."""
        from kqueue.control.pauses import change_pause

        return change_pause(self, queue, True, reason)

    def resume(self, queue: str) -> QueuePause:
        """Resume a paused queue (see `pause`): its workers start its tasks again, in order."""
        from kqueue.control.pauses import change_pause

        return change_pause(self, queue, False)

    def limit(self, queue: str, rate: str | None) -> QueueLimitState:
        """Limit all task types of `queue` together to `rate` ("500/s", "6000/m", "20/h") across every
        worker of it (each takes its share by partitions, ANDed with a type's own `rate_limit`), or
        with None (or "off") lift that limit. Durable in _kqueue.control: running workers retune
        within about two seconds, later ones start with it. Returns the state (`.as_json()`: queue,
        rate, per_second, since); ValueError for a bad rate or an unknown queue, DeliveryError when
        Kafka cannot take the command."""
        from kqueue.control.limits import change_limit

        return change_limit(self, queue, rate)

    def status(self, task_id: str) -> TaskStatus:
        """Where the task is now (queued, scheduled, processing, retrying, completed, failed,
        cancelled), with attempts, times, the last error and a kept result; asked of `kqueue api`.
        Raises TaskNotFound for an id the view does not know, StatusUnavailable if it cannot be asked."""
        from kqueue.sdk.status_client import api_url, fetch_status

        if self._producer is not None:
            self.flush(self.enqueue_timeout)  # this app's own enqueues are in Kafka before the view is asked
        return fetch_status(api_url(self.api_url), task_id)

    def wait(self, task_id: str, timeout: float = 30.0) -> TaskStatus:
        """Block until the task is completed, failed or cancelled (TimeoutError past `timeout`);
        `.value` is the handler's return value for tasks registered with keep_result=True."""
        from kqueue.sdk.status_client import api_url, wait_for

        if self._producer is not None:
            self.flush(self.enqueue_timeout)
        return wait_for(api_url(self.api_url), task_id, timeout)

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until every enqueued task is in Kafka; raises DeliveryError if any was refused."""
        if self._producer is not None:
            self._producer.flush(timeout)
