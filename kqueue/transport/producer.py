"""The producing edge: a librdkafka producer whose delivery failures always reach the caller.

A record over the producer's limit (message.max.bytes) is refused before it is produced, and one
Kafka refuses for its size (a topic whose max.message.bytes is smaller) is reported the same way:
RecordTooLarge, which no retry can help, never a DeliveryError."""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from kqueue.core.errors import DeliveryError, KqueueError, RecordTooLarge
from kqueue.core.oversize import record_size, refuse_oversize, refused_as_too_large
from kqueue.transport.config import producer_config

POLL_EVERY = 64
ROOM_PAUSES = (0.002, 0.005, 0.01, 0.02, 0.05)  # seconds an async produce sleeps between tries for room

log = logging.getLogger("kqueue.producer")

# Kafka's refusals of a record for its size (librdkafka's own check, or the broker's).
TOO_LARGE_CODES = frozenset({KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.INVALID_MSG_SIZE})


def produce_waiting(producer: Producer, topic: str, kwargs: dict[str, Any], bound: float | None = None) -> None:
    """Produce, and when librdkafka's local queue is full, serve delivery reports to make room and retry
    (for up to `bound` seconds, then DeliveryError; None: as long as it takes)."""
    deadline = None if bound is None else time.monotonic() + bound
    while True:
        try:
            producer.produce(topic, **kwargs)
            return
        except BufferError:
            if deadline is not None and time.monotonic() >= deadline:
                raise buffer_full(topic, bound, len(producer)) from None
            producer.poll(0.05)


def buffer_full(topic: str, bound: float | None, waiting: int) -> DeliveryError:
    return DeliveryError(f"{topic}: the send buffer stayed full for {bound:g}s (Kafka is away or "
                         f"slower than the enqueue rate; {waiting} record(s) waiting)")


def refused(topic: str, exc: KafkaException, kwargs: dict[str, Any]) -> KqueueError:
    """A record librdkafka refuses outright: RecordTooLarge for its size, else a DeliveryError naming why
    (unknown partition, ...)."""
    error = exc.args[0] if exc.args else exc
    if isinstance(error, KafkaError) and error.code() in TOO_LARGE_CODES:
        size = record_size(kwargs.get("value"), kwargs.get("key"), kwargs.get("headers"))
        return RecordTooLarge(f"{topic}: the record ({size} bytes) is over the producer's message.max.bytes",
                              size)
    reason = error.str() if isinstance(error, KafkaError) else str(error)
    return DeliveryError(f"{topic}: {reason}")


def delivery_failure(err: KafkaError, msg: Message) -> KqueueError:
    """A failed delivery report as the error its producer raises: RecordTooLarge when Kafka refused the
    record for its size, else a DeliveryError."""
    topic = msg.topic() or "?"
    if err.code() in TOO_LARGE_CODES:
        headers = msg.headers()
        pairs = list(headers.items()) if isinstance(headers, dict) else headers
        return refused_as_too_large(topic, record_size(msg.value(), msg.key(), pairs))
    return DeliveryError(f"{topic}: {err.str()}")


def failures_error(failures: list[KqueueError]) -> KqueueError:
    """What a flush raises for the deliveries that failed: RecordTooLarge if every one failed for its
    size (sending them again cannot help), else a DeliveryError."""
    message = f"{len(failures)} record(s) were not delivered; first: {failures[0]}"
    too_large = [f for f in failures if isinstance(f, RecordTooLarge)]
    if len(too_large) == len(failures):
        return RecordTooLarge(message, too_large[0].size, too_large[0].limit)
    return DeliveryError(message)


def settle_waiter(waiter: asyncio.Future[None], failure: str | KqueueError | None) -> bool:
    """Hand a delivery report to its awaiting caller (on the caller's loop). False when the caller
    stopped waiting (cancelled: a wait_for timeout, a TaskGroup, a shutdown), so nobody heard it."""
    if waiter.done():
        return False
    if failure is None:
        waiter.set_result(None)
    else:
        waiter.set_exception(DeliveryError(failure) if isinstance(failure, str) else failure)
    return True


class TaskProducer:
    """Wraps Producer: counts delivery failures and raises them on `flush()` or the next produce."""

    def __init__(self, bootstrap: str, bound: float | None = None, **overrides: Any) -> None:
        """bound: the longest a produce call waits for room in the send buffer (None: no limit)."""
        self._bound = bound
        config = producer_config(bootstrap, **overrides)
        # The largest record this producer sends; a larger one is refused before it is produced.
        self.record_limit = int(config["message.max.bytes"])
        self._producer = Producer(config)
        self._lock = threading.Lock()
        self._failures: list[KqueueError] = []
        self._delivered = 0
        self._produced = 0

    def _on_delivery(self, err: KafkaError | None, msg: Message,
                     on_error: Callable[[KafkaError], None] | None = None) -> None:
        if err is None:
            self._delivered += 1
            return
        with self._lock:
            self._failures.append(delivery_failure(err, msg))
        if on_error is not None:
            on_error(err)

    def produce(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
        partition: int | None = None,
        on_error: Callable[[KafkaError], None] | None = None,
    ) -> None:
        """Queue one record; `on_error` also hears of its delivery failure (the next call raises it too).
        A record over `record_limit` raises RecordTooLarge and is not produced."""
        self._raise_failures()
        refuse_oversize(topic, value, key, headers, self.record_limit)
        callback = self._on_delivery if on_error is None else functools.partial(self._on_delivery, on_error=on_error)
        kwargs: dict[str, Any] = {"value": value, "key": key, "headers": headers, "on_delivery": callback}
        if partition is not None:
            kwargs["partition"] = partition
        self._produce(topic, kwargs)
        self._produced += 1
        if self._produced % POLL_EVERY == 0:  # serve delivery reports now and then, not per record
            self._producer.poll(0)

    def _produce(self, topic: str, kwargs: dict[str, Any]) -> None:
        """Queue a record; a record librdkafka refuses outright is a RecordTooLarge or DeliveryError
        naming why."""
        try:
            produce_waiting(self._producer, topic, kwargs, self._bound)
        except KafkaException as exc:
            raise refused(topic, exc, kwargs) from None

    def flush(self, timeout: float = 30.0) -> int:
        """Wait for every record; raises RecordTooLarge if every refused one was refused for its size,
        else DeliveryError if any was refused. Returns records still queued."""
        remaining = int(self._producer.flush(timeout))
        self._raise_failures()
        if remaining:
            raise DeliveryError(f"{remaining} record(s) not delivered within {timeout:.0f}s")
        return remaining

    def _raise_failures(self) -> None:
        if not self._failures:
            return
        with self._lock:
            failures, self._failures = self._failures, []
        raise failures_error(failures)

    @property
    def delivered(self) -> int:
        return self._delivered

    def poll(self, timeout: float = 0) -> None:
        self._producer.poll(timeout)

    def __len__(self) -> int:
        return len(self._producer)


class AcknowledgedProducer(TaskProducer):
    """A TaskProducer that can also produce a record and await its delivery (for asyncio callers)."""

    def __init__(self, bootstrap: str, bound: float | None = None, **overrides: Any) -> None:
        super().__init__(bootstrap, bound, **overrides)
        self._poller: threading.Thread | None = None
        self._closed = threading.Event()

    async def produce_acknowledged(
        self, topic: str, value: bytes | None, key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        """Queue one record and wait until Kafka has it, never blocking the event loop: RecordTooLarge if
        it is over `record_limit` (not produced) or Kafka refuses it for its size, DeliveryError if Kafka
        refuses it otherwise. A cancelled caller leaves the record to be delivered; a failure then is
        logged and surfaces on `flush()`."""
        refuse_oversize(topic, value, key, headers, self.record_limit)
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()

        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            # Runs in poll() on the poller thread: it must never raise, or the poller would stop serving.
            failure = None if err is None else delivery_failure(err, msg)
            try:
                loop.call_soon_threadsafe(self._report, waiter, failure)
            except RuntimeError:  # the caller's loop is closed: nobody awaits this record any more
                self._unheard(failure)

        self._start_poller()
        await self._produce_when_room(topic, {"value": value, "key": key, "headers": headers,
                                              "on_delivery": on_delivery})
        try:
            await waiter
        except asyncio.CancelledError:
            # Cancelled just after its report arrived: the report is already set on the waiter.
            failure = waiter.exception() if waiter.done() and not waiter.cancelled() else None
            if isinstance(failure, KqueueError):
                self._unheard(failure)
            raise

    async def _produce_when_room(self, topic: str, kwargs: dict[str, Any]) -> None:
        """Produce; while the send buffer is full, sleep on the loop (the poller thread makes room) and retry
        for up to the bound, then DeliveryError."""
        loop = asyncio.get_running_loop()
        deadline = None if self._bound is None else loop.time() + self._bound
        tries = 0
        while True:
            try:
                self._producer.produce(topic, **kwargs)
                return
            except BufferError:
                if deadline is not None and loop.time() >= deadline:
                    raise buffer_full(topic, self._bound, len(self._producer)) from None
            except KafkaException as exc:
                raise refused(topic, exc, kwargs) from None
            await asyncio.sleep(ROOM_PAUSES[min(tries, len(ROOM_PAUSES) - 1)])
            tries += 1

    def _report(self, waiter: asyncio.Future[None], failure: KqueueError | None) -> None:
        if not settle_waiter(waiter, failure):
            self._unheard(failure)

    def _unheard(self, failure: KqueueError | None) -> None:
        """A delivery report whose caller stopped waiting: a failure must still reach someone."""
        if failure is None:
            return
        log.warning("a record whose enqueue was cancelled was not delivered: %s", failure)
        with self._lock:
            self._failures.append(failure)

    def _start_poller(self) -> None:
        # Delivery callbacks run inside poll(); a daemon thread serves them so awaiting never stalls.
        # A poller that is not alive (it cannot die of a callback, see _serve) is replaced.
        poller = self._poller
        if poller is not None and poller.is_alive():
            return
        with self._lock:
            if self._poller is None or not self._poller.is_alive():
                self._poller = threading.Thread(target=self._serve, name="kqueue-producer-poll", daemon=True)
                self._poller.start()

    def _serve(self) -> None:
        while not self._closed.is_set():
            try:
                self._producer.poll(0.1)
            except Exception:  # a callback raised: keep serving, or every later report would go unheard
                log.exception("a delivery callback failed; the producer keeps serving delivery reports")
