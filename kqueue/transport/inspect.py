"""Read-only views of topics and groups: sizes and consumer lag."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from confluent_kafka import Consumer, ConsumerGroupState, KafkaError, KafkaException, Message, TopicPartition
from confluent_kafka.admin import AdminClient

from kqueue.core.records import TP
from kqueue.transport.config import client_config


@dataclass(frozen=True)
class PartitionDepth:
    topic: str
    partition: int
    low: int
    high: int
    committed: int | None  # the group's committed offset, if a group was asked about

    @property
    def records(self) -> int:
        return self.high - self.low

    @property
    def lag(self) -> int:
        start = self.committed if self.committed is not None and self.committed >= 0 else self.low
        return max(0, self.high - start)


def topic_depths(bootstrap: str, topics: list[str], group: str | None = None,
                 timeout: float = 10.0) -> list[PartitionDepth]:
    """Low/high watermarks of every partition of `topics` (missing topics are skipped)."""
    consumer = Consumer({
        **client_config(bootstrap),
        "group.id": group or f"_kqueue.inspect.{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False,
        "isolation.level": "read_committed",
    })
    try:
        meta = consumer.list_topics(timeout=timeout)
        tps = [TopicPartition(t, p) for t in topics if t in meta.topics for p in sorted(meta.topics[t].partitions)]
        committed: dict[tuple[str, int], int] = {}
        if group is not None and tps:
            for tp in _committed(consumer, tps, timeout):
                committed[(tp.topic, tp.partition)] = tp.offset
        out = []
        for tp in tps:
            low, high = consumer.get_watermark_offsets(tp, timeout=timeout, cached=False)
            out.append(PartitionDepth(tp.topic, tp.partition, low, high, committed.get((tp.topic, tp.partition))))
    finally:
        consumer.close()
    if group is not None:
        out = _without_trailing_markers(bootstrap, out, timeout)
    return out


_COORDINATOR_MOVING = frozenset({KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
                                 KafkaError.COORDINATOR_NOT_AVAILABLE})


def _committed(consumer: Consumer, tps: list[TopicPartition], timeout: float) -> list[TopicPartition]:
    """The group's committed offsets, asked again while the broker says to (its coordinator moving or
    loading: NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS) until `timeout` is spent."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return list(consumer.committed(tps, timeout=max(0.1, deadline - time.monotonic())))
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            if not (isinstance(error, KafkaError) and (error.retriable() or error.code() in _COORDINATOR_MOVING)) \
                    or time.monotonic() >= deadline:
                raise
            time.sleep(0.2)


def _without_trailing_markers(bootstrap: str, depths: list[PartitionDepth], timeout: float) -> list[PartitionDepth]:
    """A group one offset short of a partition's end, where that offset is a transaction's commit
    marker (see `trailing_markers`), has nothing left there: its committed offset is the end."""
    markers = trailing_markers(bootstrap, {(d.topic, d.partition): d.committed for d in depths
                                           if d.committed is not None and d.committed >= 0
                                           and d.high - d.committed == 1}, timeout)
    return [PartitionDepth(d.topic, d.partition, d.low, d.committed, d.committed)
            if (d.topic, d.partition) in markers and d.committed is not None else d for d in depths]


def _end_reader(bootstrap: str) -> Consumer:
    """A consumer outside any group that reads committed records to a partition's end and says so."""
    return Consumer({
        **client_config(bootstrap),
        "group.id": f"_kqueue.inspect.{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False,
        "isolation.level": "read_committed",
        # The end is where the broker says it is: a transaction's commit marker takes the last
        # offset and is never delivered, so counting offsets up to the high watermark would hang.
        "enable.partition.eof": True,
        # Reading to the end of a small topic: do not let the broker sit on each fetch for 500 ms.
        "fetch.wait.max.ms": 10,
    })


def trailing_markers(bootstrap: str, one_short: dict[TP, int], timeout: float = 3.0) -> set[TP]:
    """Of partitions whose group is exactly one offset short of the end (`one_short`: partition ->
    committed offset), those where that offset is a commit marker: a partition whose last write was a
    transaction ends with one, an offset no consumer ever reads. Reading from the committed offset
    reaches the end at once there; anywhere else a record comes first (or, in an open transaction,
    nothing yet: not a marker)."""
    if not one_short:
        return set()
    consumer = _end_reader(bootstrap)
    markers: set[tuple[str, int]] = set()
    try:
        consumer.assign([TopicPartition(t, p, offset) for (t, p), offset in one_short.items()])
        pending = set(one_short)
        deadline = time.monotonic() + min(timeout, 3.0)
        while pending and time.monotonic() < deadline:
            for msg in consumer.consume(500, timeout=0.2):
                key = (msg.topic() or "", msg.partition() or 0)
                error = msg.error()
                if (error is not None and error.code() == KafkaError._PARTITION_EOF and key in pending
                        and (msg.offset() or 0) > one_short[key]):
                    # The end, past the offset left and with nothing to read before it: a marker. (An
                    # end at that offset is an open transaction's record: not a marker.)
                    markers.add(key)
                pending.discard(key)  # a record, or the end: decided either way
    finally:
        consumer.close()
    return markers


class MarkerMemory:
    """`trailing_markers`, remembered per partition with the (committed, end) pair it was asked for:
    the answer holds until one of them moves, so a probe that asks every few seconds about an idle
    queue reads each partition once instead of starting a consumer each time."""

    def __init__(self, bootstrap: str) -> None:
        self._bootstrap = bootstrap
        self._known: dict[TP, tuple[int, int, bool]] = {}  # partition -> (committed, end, is a marker)
        self.reads = 0  # times a consumer was started to decide (tests count them)

    def markers(self, one_short: dict[TP, int], timeout: float = 3.0) -> set[TP]:
        """Of `one_short` (partition -> committed offset, its end being that plus one), the partitions
        ending with a marker."""
        found: set[TP] = set()
        unknown: dict[TP, int] = {}
        for tp, committed in one_short.items():
            known = self._known.get(tp)
            if known is not None and known[:2] == (committed, committed + 1):
                if known[2]:
                    found.add(tp)
            else:
                unknown[tp] = committed
        if unknown:
            self.reads += 1
            fresh = trailing_markers(self._bootstrap, unknown, timeout)
            for tp, committed in unknown.items():
                self._known[tp] = (committed, committed + 1, tp in fresh)
            found |= fresh
        for tp in self._known.keys() - one_short.keys():
            del self._known[tp]  # moved on, or no longer asked about: forget it
        return found


def read_records(bootstrap: str, topics: list[str], timeout: float = 10.0) -> list[Message]:
    """Every committed record in `topics`, partition by partition in offset order (small topics:
    dead letters, status views, demos)."""
    consumer = _end_reader(bootstrap)
    try:
        depths = [d for d in topic_depths(bootstrap, topics, timeout=timeout) if d.records > 0]
        if not depths:
            return []
        consumer.assign([TopicPartition(d.topic, d.partition, d.low) for d in depths])
        remaining = {(d.topic, d.partition) for d in depths}
        out: list[Message] = []
        deadline = time.monotonic() + timeout
        while remaining and time.monotonic() < deadline:
            for msg in consumer.consume(500, timeout=0.2):
                error = msg.error()
                if error is None:
                    out.append(msg)
                elif error.code() == KafkaError._PARTITION_EOF:
                    remaining.discard((msg.topic(), msg.partition()))
        return out
    finally:
        consumer.close()


def read_headers(bootstrap: str, topics: list[str], timeout: float = 10.0) -> list[dict[str, str]]:
    """The headers of every committed record in `topics`."""
    from kqueue.core.headers import header_map

    return [header_map(m.headers()) for m in read_records(bootstrap, topics, timeout)]


def offsets_for_time(bootstrap: str, topic: str, partitions: list[int], at_ms: int,
                     timeout: float = 10.0) -> dict[int, int]:
    """Per partition, the first offset appended at or after `at_ms` (-1: none)."""
    consumer = Consumer({**client_config(bootstrap), "group.id": f"_kqueue.inspect.{uuid.uuid4().hex[:8]}"})
    try:
        found = consumer.offsets_for_times([TopicPartition(topic, p, at_ms) for p in partitions], timeout=timeout)
    finally:
        consumer.close()
    return {tp.partition: tp.offset for tp in found}


def group_split(bootstrap: str, group: str, timeout: float = 5.0) -> tuple[int, int] | None:
    """(members, members holding partitions) of a consumer group; None while it does not exist."""
    from kqueue.transport.admin import make_admin

    admin = make_admin(bootstrap)
    try:
        description = admin.describe_consumer_groups([group])[group].result(timeout=timeout)
    except Exception:  # no such group yet (or no answer): the caller asks again
        return None
    holding = [m for m in description.members if m.assignment and m.assignment.topic_partitions]
    return len(description.members), len(holding)


def groups_with_members(admin: AdminClient, timeout: float = 10.0) -> dict[str, bool]:
    """Every consumer group the cluster lists, and whether it has members now (from its state: Empty
    and Dead have none; any other, a rebalance or a state this client does not name, counts as having
    them). Raises (KafkaException, a timeout) when the cluster does not answer."""
    listing = admin.list_consumer_groups(request_timeout=timeout).result(timeout=timeout)
    return {g.group_id: g.state not in (ConsumerGroupState.EMPTY, ConsumerGroupState.DEAD) for g in listing.valid}


def read_record_at(bootstrap: str, topic: str, partition: int, offset: int,
                   timeout: float = 10.0) -> Message | None:
    """The record at one position, or None if it is gone (retention, deleted records) or not there."""
    consumer = Consumer({
        **client_config(bootstrap),
        "group.id": f"_kqueue.inspect.{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False,
        "isolation.level": "read_committed",
        "auto.offset.reset": "latest",  # a position below the log start must not read something else
        "enable.partition.eof": True,
    })
    try:
        consumer.assign([TopicPartition(topic, partition, offset)])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            error = msg.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    return None
                continue
            return msg if msg.offset() == offset else None
        return None
    finally:
        consumer.close()


def wait_for_split(bootstrap: str, group: str, members: int, timeout: float = 90.0) -> bool:
    """Wait until `group` has `members` members, each holding partitions (a stable split); False if
    it did not within `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.3)
        if group_split(bootstrap, group) == (members, members):
            return True
    return False
