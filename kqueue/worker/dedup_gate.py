"""The worker's side of idempotency keys and unique tasks: admit each keyed task in log order.

Claims of a queue's partition p live in `Q.dedup` partition p. The first time a worker meets a
keyed task of a partition it owns, it reads that partition's claims on a thread of its own
(`ClaimLoad`; the partition waits at that task, the others go on) and keeps the live ones in a
`ClaimBook` while it owns the partition; a new claim is written in the transaction that commits
past its task (core/dedup.py says why that keeps crashes consistent). Expired claims are never kept
and are swept from memory once a minute; Q.dedup's retention (the longest window) deletes them there.
With the range assignor one member owns partition p of every lane, so one owner decides a key.
Claims that cannot be read (Kafka away, the topic missing, no progress for 10 s) are never guessed:
`load` raises `ClaimsUnread` with how long to wait, and the worker holds that partition at the keyed
task and fetches it again then (1, 2, 5, 10, then every 30 s), while its other partitions go on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from kqueue.core import names
from kqueue.core.dedup import IDEMPOTENCY, UNIQUE, Claim, ClaimBook, claim_key, decide
from kqueue.core.ordering import BlockFold, is_ordering_key
from kqueue.core.records import OutRecord, dedup_record
from kqueue.transport.topic_reader import read_to_end
from kqueue.worker.work import WorkItem

log = logging.getLogger("kqueue.worker")
# Reading claims fails only when it stops making progress for this long: a partition with a million
# claims takes as long as it takes (on a thread of its own, see ClaimLoad).
LOAD_STALLED_AFTER = 10.0
RETRY_AFTER = (1.0, 2.0, 5.0, 10.0, 30.0)  # seconds before reading a partition's claims again
# (dedup topic, partition) -> claims by key, or the whole book (with ordered retries' blocks)
ClaimLoader = Callable[[str, int], "dict[str, Claim] | ClaimBook"]

_IDEMPOTENCY_HEADER, _UNIQUE_HEADER = names.H_IDEMPOTENCY_KEY, names.H_UNIQUE_KEY
_KEYED = (_IDEMPOTENCY_HEADER, _UNIQUE_HEADER)


class ClaimsUnread(RuntimeError):
    def __init__(self, topic: str, partition: int, cause: BaseException, retry_in: float) -> None:
        super().__init__(f"cannot read the claims of {topic}/{partition} ({cause}): holding its keyed tasks, "
                         f"trying again in {retry_in:.0f}s")
        self.retry_in = retry_in


@dataclass(frozen=True)
class Admission:
    run: bool
    claim: OutRecord | None = None  # a new claim to write when the commit passes the task
    holder: Claim | None = None  # for a duplicate: the claim it collides with
    unique: bool = False


class DedupGate:
    """The decisions: which records carry keys, whether one runs, what claim or release it writes.
    The claims themselves live on the partition owners' `ClaimBook`s."""

    def __init__(self, prefix: str, loader: ClaimLoader) -> None:
        self._prefix = prefix
        self._loader = loader

    @staticmethod
    def keyed(item: WorkItem) -> bool:
        """Does the record carry an idempotency or unique key? (A scan of its few header names.)"""
        raw = item.raw_headers
        if type(raw) is dict:  # what the decoder makes: two lookups (the Mapping ABC check is slow)
            return _IDEMPOTENCY_HEADER in raw or _UNIQUE_HEADER in raw
        if not raw:
            return False
        if isinstance(raw, Mapping):
            return any(name in raw for name in _KEYED)
        return any(name in _KEYED for name, _ in raw)

    def admit(self, item: WorkItem, book: ClaimBook, now_ms: int, finished: bool = False) -> Admission | None:
        """None for a task without keys. `finished`: a previous owner completed it (kq1 metadata), so it
        is not run, but an idempotency key it holds is still claimed."""
        task = item.task
        if task is None or not self.keyed(item) or not book.live:
            return None
        headers = item.headers
        unique_key = headers.get(names.H_UNIQUE_KEY)
        if unique_key is not None:
            kind, key = UNIQUE, unique_key
            span = _seconds(headers.get(names.H_UNIQUE_FOR), task.unique_for)
        else:
            kind, key = IDEMPOTENCY, headers.get(names.H_IDEMPOTENCY_KEY, "")
            span = task.idempotency_window
        if not key or (finished and kind == UNIQUE):
            return None  # a finished unique task holds nothing any more
        ckey = claim_key(kind, task.name, key)
        origin = headers.get(names.H_ORIGIN) or item.origin
        decision = decide(book.claims.get(ckey), origin, now_ms)
        if decision.verdict == "duplicate":
            return Admission(False, holder=decision.holder, unique=kind == UNIQUE)
        if decision.verdict == "run":
            item.claim_key = ckey if kind == UNIQUE else None  # its final settlement frees the key
            return Admission(True, unique=kind == UNIQUE)
        claim = Claim(kind, item.task_id, origin, now_ms, now_ms + int(span * 1000))
        book.claims[ckey] = claim
        item.claim_key = ckey if kind == UNIQUE else None
        return Admission(True, claim=self.claim_record(item.queue, item.partition, ckey, claim),
                         unique=kind == UNIQUE)

    def claim_record(self, queue: str, partition: int, ckey: str, claim: Claim | None) -> OutRecord:
        """The record that writes `claim` to Q.dedup (None: the tombstone that forgets the key)."""
        return dedup_record(queue, partition, ckey, claim.encode() if claim is not None else None, self._prefix)

    def release(self, item: WorkItem, book: ClaimBook | None) -> OutRecord | None:
        """A unique task's final settlement frees its key: the tombstone to write with it. Only the
        live ownership that admitted it may (`book` None: that ownership is over)."""
        ckey = item.claim_key
        if ckey is None:
            return None
        item.claim_key = None
        if book is None or not book.live:
            return None
        book.claims.pop(ckey, None)
        return self.claim_record(item.queue, item.partition, ckey, None)

    def load(self, item: WorkItem, failures: int) -> ClaimBook:
        """Read the claims of the item's partition (before its first keyed task is admitted), or
        raise ClaimsUnread saying when to try again (`failures`: reads failed in a row before)."""
        topic = names.dedup_topic(item.queue, self._prefix)
        try:
            loaded = self._loader(topic, item.partition)
            return loaded if isinstance(loaded, ClaimBook) else ClaimBook(loaded)
        except Exception as exc:
            raise ClaimsUnread(topic, item.partition, exc, RETRY_AFTER[min(failures, len(RETRY_AFTER) - 1)]) from exc


def _seconds(text: str | None, fallback: float | None) -> float:
    try:
        value = float(text) if text is not None else None
    except ValueError:
        value = None
    return value if value is not None and value > 0 else (fallback or 60.0)


class ClaimLoad:
    """Reading one queue-partition's claims on a thread of its own: a partition with a million claims
    takes seconds, and the poll loop (and every other partition) must not wait for it."""

    def __init__(self, gate: DedupGate, item: WorkItem, failures: int) -> None:
        self._gate, self._item, self._failures = gate, item, failures
        self._done = threading.Event()
        self._book: ClaimBook | None = None
        self._error: ClaimsUnread | None = None
        threading.Thread(target=self._run, name="kqueue-claims", daemon=True).start()

    def _run(self) -> None:
        try:
            self._book = self._gate.load(self._item, self._failures)
        except ClaimsUnread as exc:
            self._error = exc
        finally:
            self._done.set()

    def wait(self, seconds: float) -> bool:
        return self._done.wait(seconds)

    def result(self) -> ClaimBook:
        """The claims read (raises ClaimsUnread when they could not be); call once `wait` is True."""
        if self._error is not None:
            raise self._error
        assert self._book is not None
        return self._book


def kafka_claim_loader(bootstrap: str) -> ClaimLoader:
    def load(topic: str, partition: int) -> ClaimBook:
        claims: dict[str, Claim] = {}
        blocks = BlockFold()
        now = int(time.time() * 1000)
        for msg in read_to_end(bootstrap, [(topic, partition)], "claims", stalled_after=LOAD_STALLED_AFTER):
            key, value = (msg.key() or b"").decode(), msg.value()
            if is_ordering_key(key):
                try:
                    blocks.add(key, value)
                except (ValueError, KeyError, TypeError):
                    log.warning("ignoring an unreadable ordering record in %s/%d", topic, partition)
                continue
            if value is None:
                claims.pop(key, None)
                continue
            try:
                claim = Claim.decode(value)
            except (ValueError, KeyError, TypeError):
                log.warning("ignoring an unreadable claim in %s/%d", topic, partition)
                continue
            if claim.until_ms > now:
                claims[key] = claim
            else:  # expired: never kept (Q.dedup's retention deletes it)
                claims.pop(key, None)
        found, orphans = blocks.blocks()
        for lane, key_bytes in orphans:
            log.error("parked tasks of key %r in %s/%d have lost their blocker record (Q.dedup keeps records 7 "
                      "days): they stay parked and the key stays blocked; see README, Ordered retries",
                      key_bytes, lane, partition)
        return ClaimBook(claims, found)

    return load
