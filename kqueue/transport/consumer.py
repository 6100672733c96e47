"""The consuming edge: the worker's only way to a Kafka consumer.

`ConsumerEdge` is what the worker needs from a group consumer; `KafkaConsumerEdge` is it over
confluent-kafka. Tests of the worker's state machine drive a scripted edge of their own instead.
Records are handed over as the client's own message objects (no wrapper per record): anything with
the `Record` methods will do.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable
from typing import Any, Protocol

from confluent_kafka import TIMESTAMP_NOT_AVAILABLE as _NO_TIMESTAMP
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from kqueue.core.errors import KqueueError
from kqueue.core.records import TP
from kqueue.transport.config import consumer_config

log = logging.getLogger("kqueue.worker")
TIMESTAMP_NOT_AVAILABLE: int = _NO_TIMESTAMP
REJOIN_PAUSE = 1.0
COMMITTED_TIMEOUT = 5.0
# How librdkafka words the static-membership refusals inside a fatal error.
_UNRELEASED = KafkaError(KafkaError.UNRELEASED_INSTANCE_ID).str()
_FENCED = KafkaError(KafkaError.FENCED_INSTANCE_ID).str()


class ConsumerFatal(KqueueError):
    """The group consumer cannot go on (e.g. another live worker has this worker's instance id)."""


class Record(Protocol):
    """One consumed record (confluent-kafka's Message has exactly these methods)."""

    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def key(self) -> bytes | None: ...
    def value(self) -> bytes | None: ...
    def headers(self) -> dict[str, str | bytes | None] | list[tuple[str, str | bytes | None]] | None: ...
    def timestamp(self) -> tuple[int, int]: ...


class RebalanceListener(Protocol):
    """Called from inside `poll_batch`, on the polling thread, as the group hands partitions out."""

    def on_assign(self, partitions: list[TP]) -> None: ...
    def on_revoke(self, partitions: list[TP]) -> None: ...
    def on_lost(self, partitions: list[TP]) -> None: ...


class ConsumerEdge(Protocol):
    def subscribe(self, topics: list[str], listener: RebalanceListener) -> None: ...

    def poll_batch(self, max_records: int, timeout: float) -> list[Record]:
        """Up to `max_records` records: at once if any are fetched, else as soon as the first arrives
        (never waiting out `timeout` for a full batch)."""
        ...

    def pause(self, partitions: Iterable[TP]) -> None: ...
    def resume(self, partitions: Iterable[TP]) -> None: ...
    def seek(self, partition: TP, offset: int) -> None: ...
    def commit(self, offsets: dict[TP, int], metadata: dict[TP, str] | None = None) -> None: ...
    def committed_offsets(self, partitions: list[TP]) -> dict[TP, tuple[int, str | None]]:
        """The group's committed offset and metadata per partition (on the polling thread)."""
        ...
    def cached_lag(self, partitions: list[TP]) -> dict[TP, int]:
        """Records of each partition not handed out yet, from what the client knows already (no request
        to Kafka); partitions it cannot tell are left out."""
        ...
    def group_metadata(self) -> Any: ...
    def member_id(self) -> str:
        """This member's id in the group ("" until it has joined)."""
        ...
    def close(self) -> None: ...


def offset_with_note(topic: str, partition: int, offset: int, notes: dict[TP, str]) -> TopicPartition:
    """An offset to commit, with its metadata when there is any (the client takes a str or nothing)."""
    note = notes.get((topic, partition))
    if note is None:
        return TopicPartition(topic, partition, offset)
    return TopicPartition(topic, partition, offset, metadata=note)


def _tps(partitions: Iterable[TP]) -> list[TopicPartition]:
    return [TopicPartition(topic, partition) for topic, partition in partitions]


class KafkaConsumerEdge:
    """A confluent-kafka consumer in a group: incremental assignment, read_committed, manual commits."""

    def __init__(self, bootstrap: str, group: str, protocol: str = "consumer", **overrides: Any) -> None:
        config = consumer_config(bootstrap, group, protocol, **overrides)
        # Cooperative-sticky and KIP-848 hand out partitions incrementally; an eager strategy does not.
        self._incremental = ("cooperative" in str(config.get("partition.assignment.strategy", ""))
                             or config.get("group.protocol") == "consumer")
        self._config = config
        self._consumer = Consumer(config)
        self._listener: RebalanceListener | None = None
        self._topics: list[str] = []
        self._callback_error: BaseException | None = None
        self._assigned = 0
        self._rejoin_at: float | None = None
        self._starts: dict[TP, int] = {}  # committed offsets read at assignment: where a partition starts

    def subscribe(self, topics: list[str], listener: RebalanceListener) -> None:
        self._listener = listener
        self._topics = topics
        self._consumer.subscribe(topics, on_assign=self._on_assign, on_revoke=self._on_revoke,
                                 on_lost=self._on_lost)

    def _on_fatal(self, error: KafkaError) -> None:
        """A fatal consumer error. Static membership (KIP-848): our instance id still belongs to a
        member that never left (this worker's crashed predecessor) until that member's session
        expires, so before anything is assigned, wait and join again; anything else stops the worker."""
        if _UNRELEASED in error.str() and not self._assigned:
            if self._rejoin_at is None:
                log.warning("instance id %s is still held by a member that did not leave (a crashed "
                            "predecessor?); joining again until its session expires",
                            self._config.get("group.instance.id"))
            with contextlib.suppress(KafkaException):
                self._consumer.close()
            self._rejoin_at = time.monotonic() + REJOIN_PAUSE
            return
        if _FENCED in error.str():
            raise ConsumerFatal(f"another live worker joined group {self._config['group.id']} with instance id "
                                f"{self._config.get('group.instance.id')}: give each worker its own id")
        raise ConsumerFatal(f"the Kafka consumer failed for good: {error.str()}")

    def _rejoin(self, timeout: float) -> bool:
        """While waiting to join again, False; True once a fresh consumer has subscribed."""
        assert self._rejoin_at is not None
        if time.monotonic() < self._rejoin_at:
            time.sleep(min(timeout, max(0.0, self._rejoin_at - time.monotonic())))
            return False
        self._rejoin_at = None
        self._consumer = Consumer(self._config)
        assert self._listener is not None
        self.subscribe(self._topics, self._listener)
        return True

    def poll_batch(self, max_records: int, timeout: float) -> list[Record]:
        if self._rejoin_at is not None and not self._rejoin(timeout):
            return []
        consume = self._consumer.consume
        messages = consume(max_records, 0)
        if not messages:
            # consume(n, t) waits out t whenever fewer than n are there: wait for one record only,
            # then take whatever else has been fetched meanwhile.
            messages = consume(1, timeout)
            if messages and max_records > 1:
                messages += consume(max_records - 1, 0)
        self._raise_callback_error()
        good: list[Record] = []
        for msg in messages:
            error = msg.error()
            if error is None:
                good.append(msg)
            elif error.fatal() or error.code() == KafkaError._FATAL:
                self._on_fatal(error)
                return []
            else:
                log.warning("consumer error: %s", error)
        return good

    def pause(self, partitions: Iterable[TP]) -> None:
        self._consumer.pause(_tps(partitions))

    def resume(self, partitions: Iterable[TP]) -> None:
        self._consumer.resume(_tps(partitions))

    def seek(self, partition: TP, offset: int) -> None:
        self._consumer.seek(TopicPartition(partition[0], partition[1], offset))

    def commit(self, offsets: dict[TP, int], metadata: dict[TP, str] | None = None) -> None:
        notes = metadata or {}
        tps = [offset_with_note(t, p, o, notes) for (t, p), o in offsets.items()]
        self._consumer.commit(offsets=tps, asynchronous=False)

    def committed_offsets(self, partitions: list[TP]) -> dict[TP, tuple[int, str | None]]:
        if not partitions:
            return {}
        try:
            found = self._consumer.committed(_tps(partitions), timeout=COMMITTED_TIMEOUT)
        except KafkaException as exc:  # only an optimisation: without it, completed work runs again
            log.info("could not read the committed metadata of %d partition(s): %s", len(partitions), exc)
            return {}
        starts = {(tp.topic, tp.partition): (tp.offset, tp.metadata) for tp in found if tp.offset >= 0}
        self._starts.update((tp, offset) for tp, (offset, _) in starts.items())
        return starts

    def cached_lag(self, partitions: list[TP]) -> dict[TP, int]:
        """The end offset from the last fetch response (each response carries it, also for a partition
        whose records wait behind others in the client's queue; read_committed: past the transaction
        markers) minus the position: the next record to hand out; for a partition nothing was handed
        out of since its assignment, its committed offset, else its log start (auto.offset.reset is
        earliest). Only what the client has cached: no request to Kafka."""
        if not partitions:
            return {}
        consumer = self._consumer
        lags: dict[TP, int] = {}
        try:
            positions = consumer.position(_tps(partitions))
            for tp in positions:
                low, high = consumer.get_watermark_offsets(tp, cached=True)
                start = tp.offset if tp.offset >= 0 else self._starts.get((tp.topic, tp.partition), low)
                if high >= 0 and start >= 0:
                    lags[(tp.topic, tp.partition)] = max(0, high - start)
        except (KafkaException, RuntimeError):  # closed, or between a fatal error and the rejoin
            return {}
        return lags

    def group_metadata(self) -> Any:
        return self._consumer.consumer_group_metadata()

    def member_id(self) -> str:
        try:
            return self._consumer.memberid() or ""
        except (KafkaException, RuntimeError):  # closed, or between a fatal error and the rejoin
            return ""

    def close(self) -> None:
        started = time.monotonic()
        try:
            self._consumer.close()  # leaves the group; the revoke callback commits what is settled
        except KafkaException as exc:
            log.warning("closing the consumer after %.1fs: %s", time.monotonic() - started, exc)
        self._raise_callback_error()

    # -- rebalance callbacks: errors are kept and raised on the polling thread, with their traceback --
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._assigned += len(partitions)
        if partitions:
            if self._incremental:
                consumer.incremental_assign(partitions)
            else:
                consumer.assign(partitions)
            # librdkafka keeps a partition's pause flag across revoke and re-assign: one paused before
            # it was lost would come back paused for good. The listener pauses again what it must.
            consumer.resume(partitions)
        self._call("on_assign", partitions)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._assigned -= len(partitions)
        self._call("on_revoke", partitions)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._assigned -= len(partitions)
        self._call("on_lost", partitions)

    def _call(self, hook: str, partitions: list[TopicPartition]) -> None:
        if hook != "on_assign":
            for tp in partitions:
                self._starts.pop((tp.topic, tp.partition), None)
        if self._listener is None or self._callback_error is not None:
            return
        try:
            getattr(self._listener, hook)([(tp.topic, tp.partition) for tp in partitions])
        except BaseException as exc:
            self._callback_error = exc

    def _raise_callback_error(self) -> None:
        if self._callback_error is not None:
            error, self._callback_error = self._callback_error, None
            raise error
