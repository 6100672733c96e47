"""Idempotency keys and unique tasks: claims, and the decision a partition's owner makes. Pure.

A task with an idempotency key or a unique key is admitted by the owner of its partition, in log
order: the first record of a key claims it; a later record of the same key is a duplicate while the
claim holds. A claim is written to `Q.dedup` (compacted, same partition number as the task) in the
transaction that commits past the task, so a crash or a hand-over leaves claims and offsets in step,
and the next owner, reading the claims back, decides the re-delivered records the same way.

- idempotency key (scope: queue, task type, key): the claim holds for the type's window (default
  24 h) whatever became of the task; duplicates are settled without running (they share its id).
- unique key (scope: queue, task type, key; the key defaults to a hash of the payload): the claim
  holds until the task's final settlement (completed, dead-lettered or cancelled), at most
  `unique_for` seconds; duplicates are settled `cancelled`, naming the task they duplicate.

A claim's owner is recognised by the position of its first delivery (`kq-origin`, or its own
position on a first attempt), so its retries, and a replay of its dead letter, run.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from typing import Literal

from kqueue.core.ordering import BlockId, KeyBlock

IDEMPOTENCY = "idempotency"
UNIQUE = "unique"
DEFAULT_IDEMPOTENCY_WINDOW = 24 * 3600.0  # seconds
MAX_WINDOW = 7 * 24 * 3600.0  # the dedup topic keeps claims this long

_IDEMPOTENT_NAMESPACE = uuid.UUID("a7d4c1e2-93b8-5f06-8e2d-4c1b7a9e3f50")


def idempotent_task_id(queue: str, task_type: str, key: str) -> str:
    """The id every enqueue of (queue, type, idempotency key) gets: retried or racing calls agree
    without asking anyone."""
    return str(uuid.uuid5(_IDEMPOTENT_NAMESPACE, f"{queue}\x00{task_type}\x00{key}"))


def payload_unique_key(value: bytes) -> str:
    """A unique task's default key: its encoded payload's digest."""
    return hashlib.sha256(value).hexdigest()[:32]


@dataclass(frozen=True)
class Claim:
    kind: str  # idempotency | unique
    task_id: str
    origin: str  # topic/partition/offset of the claimant's first delivery
    at_ms: int
    until_ms: int

    def encode(self) -> bytes:
        return json.dumps({"kind": self.kind, "task_id": self.task_id, "origin": self.origin, "at_ms": self.at_ms,
                           "until_ms": self.until_ms}, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, value: bytes) -> Claim:
        d = json.loads(value)
        return cls(str(d["kind"]), str(d["task_id"]), str(d["origin"]), int(d["at_ms"]), int(d["until_ms"]))


class ClaimBook:
    """The claims of one queue-partition (read from `Q.dedup`) while its lanes are owned here.

    Shared by that partition of each of the queue's lanes, and ended with the first of them to be
    revoked or lost: after that nothing reads or changes it, so a stale run cannot free a key the
    next ownership claimed."""

    __slots__ = ("blocks", "claims", "live", "next_sweep_ms")

    def __init__(self, claims: dict[str, Claim], blocks: dict[BlockId, KeyBlock] | None = None) -> None:
        self.claims = claims
        # Blocked keys of ordered retries (core/ordering.py): kept in the same topic, read together.
        self.blocks: dict[BlockId, KeyBlock] = blocks if blocks is not None else {}
        self.live = True
        self.next_sweep_ms = 0

    def end(self) -> None:
        self.live = False

    def sweep(self, now_ms: int) -> list[str]:
        """Forget the claims that have expired; their keys (a tombstone each makes Q.dedup forget them)."""
        expired = [key for key, claim in self.claims.items() if claim.until_ms <= now_ms]
        for key in expired:
            del self.claims[key]
        return expired


def claim_key(kind: str, task_type: str, key: str) -> str:
    return f"{kind}\x00{task_type}\x00{key}"


@dataclass(frozen=True)
class Decision:
    verdict: Literal["claim", "run", "duplicate"]  # claim: first of its key, write the claim
    holder: Claim | None = None  # the claim that makes it a duplicate


def decide(existing: Claim | None, origin: str, now_ms: int) -> Decision:
    """Admit a task whose first delivery was at `origin`, given the claim on its key."""
    if existing is None or existing.until_ms <= now_ms:
        return Decision("claim")
    if existing.origin == origin:
        return Decision("run")  # the claimant itself: a retry, a re-delivery, a replay
    return Decision("duplicate", existing)
