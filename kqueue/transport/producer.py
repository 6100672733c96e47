"""The producing edge: a librdkafka producer whose delivery failures always reach the caller."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from kqueue.core.errors import DeliveryError
from kqueue.transport.config import producer_config

POLL_EVERY = 64


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
                raise DeliveryError(f"{topic}: the send buffer stayed full for {bound:g}s (Kafka is away or "
                                    f"slower than the enqueue rate; {len(producer)} record(s) waiting)") from None
            producer.poll(0.05)


class TaskProducer:
    """Wraps Producer: counts delivery failures and raises them on `flush()` or the next produce."""

    def __init__(self, bootstrap: str, bound: float | None = None, **overrides: Any) -> None:
        """bound: the longest a produce call waits for room in the send buffer (None: no limit)."""
        self._bound = bound
        self._producer = Producer(producer_config(bootstrap, **overrides))
        self._lock = threading.Lock()
        self._failures: list[str] = []
        self._delivered = 0
        self._produced = 0

    def _on_delivery(self, err: KafkaError | None, msg: Message,
                     on_error: Callable[[KafkaError], None] | None = None) -> None:
        if err is None:
            self._delivered += 1
            return
        with self._lock:
            self._failures.append(f"{msg.topic()}: {err.str()}")
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
        """Queue one record; `on_error` also hears of its delivery failure (the next call raises it too)."""
        self._raise_failures()
        callback = self._on_delivery if on_error is None else functools.partial(self._on_delivery, on_error=on_error)
        kwargs: dict[str, Any] = {"value": value, "key": key, "headers": headers, "on_delivery": callback}
        if partition is not None:
            kwargs["partition"] = partition
        self._produce(topic, kwargs)
        self._produced += 1
        if self._produced % POLL_EVERY == 0:  # serve delivery reports now and then, not per record
            self._producer.poll(0)

    def _produce(self, topic: str, kwargs: dict[str, Any]) -> None:
        """Queue a record; a record librdkafka refuses outright (too large, unknown partition) is a
        DeliveryError naming why."""
        try:
            produce_waiting(self._producer, topic, kwargs, self._bound)
        except KafkaException as exc:
            error = exc.args[0] if exc.args else exc
            reason = error.str() if isinstance(error, KafkaError) else str(error)
            too_large = isinstance(error, KafkaError) and error.code() == KafkaError.MSG_SIZE_TOO_LARGE
            raise DeliveryError(f"{topic}: {reason}", too_large) from None

    def flush(self, timeout: float = 30.0) -> int:
        """Wait for every record; raises DeliveryError if any was refused. Returns records still queued."""
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
        raise DeliveryError(f"{len(failures)} record(s) were not delivered; first: {failures[0]}")

    @property
    def delivered(self) -> int:
        return self._delivered

    def poll(self, timeout: float = 0) -> None:
        self._producer.poll(timeout)

    def __len__(self) -> int:
        return len(self._producer)


class AcknowledgedProducer(TaskProducer):
    """A TaskProducer that can also hand back a future per record (for asyncio callers)."""

    def __init__(self, bootstrap: str, bound: float | None = None, **overrides: Any) -> None:
        super().__init__(bootstrap, bound, **overrides)
        self._poller: threading.Thread | None = None
        self._closed = threading.Event()

    def produce_acknowledged(
        self, topic: str, value: bytes | None, key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> Future[None]:
        future: Future[None] = Future()

        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            if err is None:
                future.set_result(None)
            else:
                future.set_exception(DeliveryError(f"{msg.topic()}: {err.str()}"))

        self._start_poller()
        self._produce(topic, {"value": value, "key": key, "headers": headers, "on_delivery": on_delivery})
        return future

    def _start_poller(self) -> None:
        # Delivery callbacks run inside poll(); a daemon thread serves them so awaiting never stalls.
        if self._poller is not None:
            return
        with self._lock:
            if self._poller is None:
                self._poller = threading.Thread(target=self._serve, name="kqueue-producer-poll", daemon=True)
                self._poller.start()

    def _serve(self) -> None:
        while not self._closed.is_set():
            self._producer.poll(0.1)
