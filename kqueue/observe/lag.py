"""Queue depth as consumer-group lag, per queue, lane and tier, for the partitions a worker owns.

A background thread asks Kafka every few seconds (two batched admin calls: the partitions' last
stable offsets and the group's committed offsets), so a scrape only reads gauges and the poll loop
never waits on it. Each worker reports its own partitions; Prometheus (or the supervisor's
multiprocess scrape) sums them into the group's lag. Its answers double as "the broker answers"
for readiness.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable

from kqueue.core.names import PRIORITIES, queue_of_topic, tier_of_topic
from kqueue.core.records import TP
from kqueue.observe.metrics import WorkerMetrics
from kqueue.sdk.middleware import Middleware, TickEvent
from kqueue.transport.admin import make_admin
from kqueue.transport.inspect import MarkerMemory
from kqueue.transport.offsets import Admin, group_committed, topic_ends

log = logging.getLogger("kqueue.metrics")
LAG_EVERY = 5.0  # seconds between lag reads
LagKey = tuple[str, str, str]  # (queue, lane, tier): lane "" for a tier, tier "" for a lane


def lag_key(topic: str, prefix: str) -> LagKey:
    """Which queue, priority lane or delay tier a topic is (`email.high` -> ("email", "high", ""))."""
    queue = queue_of_topic(topic, prefix)
    tier = tier_of_topic(topic)
    if tier is not None:
        return (queue, "", tier)
    for lane in PRIORITIES:
        if topic.endswith(f".{lane}") and lane != "normal":
            return (queue, lane, "")
    return (queue, "normal", "")


def lag_by_key(ends: dict[TP, int], committed: dict[TP, int], starts: dict[TP, int], prefix: str) -> dict[LagKey, int]:
    """Records not committed yet, summed per (queue, lane, tier). A partition the group never
    committed lags from its first record (`starts`)."""
    out: dict[LagKey, int] = {}
    for tp, end in ends.items():
        position = committed.get(tp, -1)
        if position < 0:
            position = starts.get(tp, end)
        key = lag_key(tp[0], prefix)
        out[key] = out.get(key, 0) + max(0, end - position)
    return out


class LagProbe(Middleware):
    """Keeps `kqueue_queue_lag` fresh for the owned partitions (from on_tick) on its own thread."""

    def __init__(self, bootstrap: str, prefix: str, metrics: WorkerMetrics, every: float = LAG_EVERY) -> None:
        self._bootstrap = bootstrap
        self._prefix = prefix
        self._metrics = metrics
        self._every = every
        self._lock = threading.Lock()
        self._group = ""
        self._partitions: tuple[TP, ...] = ()
        self._reported: set[LagKey] = set()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.answered_at: float | None = None  # monotonic time of the last answer from Kafka
        self.last: dict[LagKey, int] = {}
        self._markers = MarkerMemory(bootstrap)  # an idle queue's trailing markers, read once

    def on_tick(self, event: TickEvent) -> None:
        with self._lock:
            self._group, self._partitions = event.group, event.partitions
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="kqueue-lag", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        admin: Admin | None = None
        while not self._stop.is_set():
            with self._lock:
                group, partitions = self._group, self._partitions
            try:
                if admin is None:  # made in here: settings that fail now may be fixed by the next pass
                    admin = make_admin(self._bootstrap, quiet=True)
                self._publish(group, self._read(admin, group, partitions))
                self.answered_at = time.monotonic()
            except Exception as exc:  # Kafka away: the gauges keep their last values; readiness notices
                log.debug("reading lag failed: %s", exc)
                # librdkafka's admin client keeps a stale leader epoch after a broker restart and then
                # fails every ListOffsets with FENCED_LEADER_EPOCH: a fresh client reads fresh metadata.
                admin = None
            self._stop.wait(self._every)

    def _read(self, admin: Admin, group: str, partitions: Iterable[TP]) -> dict[LagKey, int]:
        tps = list(partitions)
        timeout = self._every * 2
        if not tps:
            admin.list_topics(timeout=timeout)  # still proves Kafka answers
            return {}
        ends = topic_ends(admin, tps, timeout)
        committed = group_committed(admin, group, tps, timeout)
        # A partition ending with a transaction's commit marker is not one task behind.
        one_short = {tp: committed[tp] for tp in tps
                     if committed.get(tp, -1) >= 0 and ends.get(tp, 0) - committed[tp] == 1}
        for tp in self._markers.markers(one_short, timeout):
            ends[tp] = committed[tp]
        never = [tp for tp in tps if committed.get(tp, -1) < 0]
        starts = topic_ends(admin, never, timeout, earliest=True) if never else {}
        return lag_by_key(ends, committed, starts, self._prefix)

    def _publish(self, group: str, lag: dict[LagKey, int]) -> None:
        gauge = self._metrics.lag
        for key in self._reported - lag.keys():
            gauge.labels(*key, group).set(0)  # no longer ours: whoever owns it now reports it
        for key, value in lag.items():
            gauge.labels(*key, group).set(value)
        self._reported = set(lag)
        self.last = lag

