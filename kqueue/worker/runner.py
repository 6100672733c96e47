"""Running one handler: its context, its time limit, and the middleware hooks around it."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from kqueue.core.control import cancel_applies
from kqueue.sdk.context import TaskContext
from kqueue.sdk.middleware import Hooks
from kqueue.worker.work import Failure, WorkItem


def task_context(item: WorkItem, cancels: set[str] | frozenset[str] = frozenset()) -> TaskContext:
    task = item.task
    assert task is not None
    return TaskContext(
        task_id=item.task_id, task_type=task.name, queue=item.queue, key=item.key,
        attempt=item.meta.attempt, max_attempts=item.meta.max_attempts or task.max_attempts,
        topic=item.topic, partition=item.partition, offset=item.offset,
        enqueued_at=item.meta.enqueued_at, headers=item.headers, cancels=cancels,
    )


class _TimeLimit(TimeoutError):
    """Our deadline passed (a TimeoutError the handler raises itself is its own failure)."""


def _time_limit(timeout: float) -> _TimeLimit:
    return _TimeLimit(f"task exceeded its {timeout}s time limit")


class Overruns:
    """Sync handler threads still running past their time limit (Python cannot stop them)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.live = 0  # running now, their attempts already failed
        self.total = 0

    def began(self) -> None:
        with self._lock:
            self.live += 1
            self.total += 1

    def ended(self) -> None:
        with self._lock:
            self.live -= 1


def _call_with_deadline(fn: Callable[..., Any], args: tuple[Any, ...], timeout: float, overruns: Overruns) -> Any:
    """Run a sync handler on its own thread and stop waiting at the deadline.

    Python cannot stop a thread: past the deadline the attempt fails and the worker moves on, while
    the handler's thread runs on to its end and its result is ignored; `overruns` counts such
    threads (the worker restarts its process past a bound). Only tasks that declare a timeout pay
    this thread hop.
    """
    lock = threading.Lock()
    finished = threading.Event()
    overran = False
    errors: list[BaseException] = []
    results: list[Any] = []

    def target() -> None:
        try:
            results.append(fn(*args))
        except BaseException as exc:
            errors.append(exc)
        finally:
            with lock:
                finished.set()
                if overran:
                    overruns.ended()

    # The handler's thread sees the caller's context (a tracer's current span, for one).
    context = contextvars.copy_context()
    threading.Thread(target=context.run, args=(target,), name="kqueue-timed-task", daemon=True).start()
    if not finished.wait(timeout):
        with lock:  # the thread may have finished just now: then nothing overran
            if not finished.is_set():
                overran = True
                overruns.began()
        if overran:
            raise _time_limit(timeout)
    if errors:
        raise errors[0]
    return results[0] if results else None


def _failure(exc: BaseException) -> Failure:
    if isinstance(exc, _TimeLimit):
        return Failure("TimeoutError", str(exc))  # the handler's trace says nothing about our clock
    return Failure.from_exception(exc)


class Runner:
    """Calls handlers; with middleware, wraps each call in the before/after hooks."""

    def __init__(self, hooks: Hooks | None = None, cancelled: set[str] | None = None,
                 track_running: bool = False) -> None:
        # Task ids with a pending cancel (filled by another thread): checked as each task starts.
        self._cancelled: set[str] = cancelled if cancelled is not None else set()
        # The items whose handlers run now, for worker reports (the status view's `processing`).
        self.running: dict[int, WorkItem] | None = {} if track_running else None
        # Async handlers of tasks registered interruptible=True, running now: a cancel cancels them.
        self._interruptibles: dict[int, tuple[WorkItem, asyncio.Future[Any], asyncio.AbstractEventLoop]] = {}
        self._hooks = hooks if hooks is not None and hooks.around_run else None
        # Settle listeners (metrics, logs) want each run's start and length: two clock reads.
        self._timed = self._hooks is not None or (hooks is not None and bool(hooks.settle))
        self.overruns = Overruns()

    def run_sync(self, item: WorkItem) -> Failure | None:
        if self._cancelled and cancel_applies(self._cancelled, item):
            return Failure.cancel()
        running = self.running
        if running is None:
            task = item.task
            if self._timed or task is None or task.wants_ctx or task.timeout is not None or task.keep_result:
                return self._run_sync(item)
            try:  # the plain case of `_run_sync`, inlined (one call less per task)
                task.fn(item.payload)
            except BaseException as exc:  # as in `_run_sync`
                return _failure(exc)
            return None
        if not item.started_at:
            item.started_at = time.time()
        running[id(item)] = item
        try:
            return self._run_sync(item)
        finally:
            del running[id(item)]

    def _run_sync(self, item: WorkItem) -> Failure | None:
        if self._hooks is not None:
            return self._run_sync_hooked(item, self._hooks)
        task = item.task
        assert task is not None
        if self._timed:
            if not item.started_at:  # run_sync set it already when it tracks running items
                item.started_at = time.time()
            started = time.perf_counter()
        try:
            args = (item.payload, task_context(item, self._cancelled)) if task.wants_ctx else (item.payload,)
            if task.timeout is not None:
                value = _call_with_deadline(task.fn, args, task.timeout, self.overruns)
            else:
                value = task.fn(*args)
            if task.keep_result:
                item.result = value
        except BaseException as exc:  # even SystemExit from a handler is the task's failure, not the worker's
            if self._timed:
                item.run_seconds = time.perf_counter() - started
            return _failure(exc)
        if self._timed:
            item.run_seconds = time.perf_counter() - started
        return None

    def _run_sync_hooked(self, item: WorkItem, hooks: Hooks) -> Failure | None:
        task = item.task
        assert task is not None
        ctx = task_context(item, self._cancelled)
        error: BaseException | None = None
        item.started_at = time.time()
        started = time.perf_counter()
        try:
            for before in hooks.before_run:
                before(ctx)
            args = (item.payload, ctx) if task.wants_ctx else (item.payload,)
            if task.timeout is not None:
                value = _call_with_deadline(task.fn, args, task.timeout, self.overruns)
            else:
                value = task.fn(*args)
            if task.keep_result:
                item.result = value
        except BaseException as exc:
            error = exc
        item.run_seconds = time.perf_counter() - started
        hooks.emit(hooks.after_run, ctx, error, item.run_seconds)
        return None if error is None else _failure(error)

    def _interruptible(self, item: WorkItem, coro: Coroutine[Any, Any, Any]) -> Awaitable[Any]:
        """The handler as a task of its own, which `interrupt` may cancel (and nothing else with it)."""
        inner = asyncio.ensure_future(coro)
        self._interruptibles[id(item)] = (item, inner, asyncio.get_running_loop())
        inner.add_done_callback(lambda _: self._interruptibles.pop(id(item), None))
        return inner

    def interrupt(self, cancelled: set[str]) -> int:
        """Cancel the running async handlers of interruptible tasks named in `cancelled` (any thread)."""
        hits = 0
        for item, inner, loop in list(self._interruptibles.copy().values()):
            if cancel_applies(cancelled, item) and not inner.done():
                loop.call_soon_threadsafe(inner.cancel)
                hits += 1
        return hits

    async def run_async(self, item: WorkItem) -> Failure | None:
        if self._cancelled and cancel_applies(self._cancelled, item):
            return Failure.cancel()
        running = self.running
        if running is None:
            return await self._run_async(item)
        if not item.started_at:
            item.started_at = time.time()
        running[id(item)] = item
        try:
            return await self._run_async(item)
        finally:
            del running[id(item)]

    async def _run_async(self, item: WorkItem) -> Failure | None:
        task = item.task
        assert task is not None
        hooks = self._hooks
        ctx = task_context(item, self._cancelled) if hooks is not None or task.wants_ctx else None
        error: BaseException | None = None
        limit: asyncio.Timeout | None = None
        if self._timed and not item.started_at:  # run_async set it already when it tracks running items
            item.started_at = time.time()
        started = time.perf_counter()
        try:
            if hooks is not None:
                for before in hooks.before_run:
                    before(ctx)
            coro = task.fn(item.payload, ctx) if task.wants_ctx else task.fn(item.payload)
            if task.interruptible:
                coro = self._interruptible(item, coro)
            if task.timeout is None:
                value = await coro
            else:
                # asyncio.timeout tells our deadline apart from a TimeoutError the handler raised
                # itself (a socket timeout is the handler's failure, with its own traceback).
                async with asyncio.timeout(task.timeout) as limit:
                    value = await coro
            if task.keep_result:
                item.result = value
        except TimeoutError as exc:
            error = _time_limit(task.timeout or 0) if limit is not None and limit.expired() else exc
        except BaseException as exc:  # includes a handler's own CancelledError or SystemExit
            error = exc
        if self._timed:
            item.run_seconds = time.perf_counter() - started
        if hooks is not None:
            assert ctx is not None and item.run_seconds is not None
            hooks.emit(hooks.after_run, ctx, error, item.run_seconds)
        return None if error is None else _failure(error)
