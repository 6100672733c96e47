"""Ordered retries (`@app.task(ordered=True)`): a key's later tasks wait behind its retry. Pure.

While an ordered task of key k in lane L waits for its retry, k is *blocked* in L: the retry is
its *blocker*, named by the position of its first delivery (`kq-origin`). A later task of k is
*parked*: settled where it stands (the commit moves past it) with a park entry naming its offset.
When the blocker is over (completed, dead-lettered, cancelled) the oldest parked task is copied
to the end of L with `kq-origin` naming where it was parked, and that copy is the next blocker;
the last one ends the block. So a key's tasks run in their order, one copy at a time, and other
keys never wait.

Both live in `Q.dedup` (compacted, the partition's claims), written in the transaction that
commits past the task that changed them, so a crash or a hand-over leaves them in step with the
offsets:
- `ordered\\0<lane>\\0<key hex>` -> the blocker (rewritten at each failed attempt, tombstoned at the end);
- `parked\\0<lane>\\0<key hex>\\0<offset>` -> one parked task (tombstoned when its copy is written).

Why the copy is safe: a blocker's record is written after every task already parked behind it
was read, so the oldest parked offset is always below the blocker's own, and its entry is written
before the blocker's settlement in the log. A task of k read while the blocker itself is read (not
waiting in a tier) and nothing is parked simply queues behind it, as any task of its key does.
"""

from __future__ import annotations

import bisect
import json
from dataclasses import dataclass, field
from enum import Enum

BLOCK_PREFIX = "ordered\x00"
PARK_PREFIX = "parked\x00"
BlockId = tuple[str, bytes]  # (lane topic, key)


@dataclass
class KeyBlock:
    """A blocked key of one lane on one partition, while its owner owns it."""

    blocker: str  # the first-delivery position (`topic/partition/offset`) of the task it waits for
    parked: list[int] = field(default_factory=list)  # offsets in the lane, oldest first
    follow: bool = False  # the blocker was dead-lettered with ordered="follow": the parked follow it
    admitted: bool = False  # the blocker's delivery is read and queued here (not waiting in a tier)

    def park(self, offset: int) -> None:
        if offset not in self.parked:  # a re-delivery of a task parked before (its entry not yet committed)
            bisect.insort(self.parked, offset)


class Admit(Enum):
    RUN = "run"  # not blocked, or the blocker itself, or queued behind the blocker read meanwhile
    PARK = "park"
    FOLLOW = "follow"  # a copy whose blocker was dead-lettered with ordered="follow": to the DLQ


def admit(block: KeyBlock | None, first_origin: str) -> Admit:
    """What a task of a key is, given the key's block (`first_origin`: kq-origin, else its own position)."""
    if block is None:
        return Admit.RUN
    if first_origin == block.blocker:
        return Admit.FOLLOW if block.follow else Admit.RUN
    if block.parked or not block.admitted:
        return Admit.PARK
    return Admit.RUN  # queued behind the blocker: runs after it, or is parked if it fails again


def block_key(lane: str, key: bytes) -> str:
    return f"{BLOCK_PREFIX}{lane}\x00{key.hex()}"


def park_key(lane: str, key: bytes, offset: int) -> str:
    return f"{PARK_PREFIX}{lane}\x00{key.hex()}\x00{offset}"


def encode_block(block: KeyBlock) -> bytes:
    return json.dumps({"kind": "ordered", "blocker": block.blocker, "follow": block.follow},
                      separators=(",", ":")).encode()


PARK_VALUE = b'{"kind":"parked"}'


def is_ordering_key(key: str) -> bool:
    return key.startswith(BLOCK_PREFIX) or key.startswith(PARK_PREFIX)


class BlockFold:
    """Blocks read back from `Q.dedup` in log order (the newest record of a key wins)."""

    def __init__(self) -> None:
        self._blockers: dict[BlockId, tuple[str, bool]] = {}
        self._parked: dict[BlockId, set[int]] = {}

    def add(self, key: str, value: bytes | None) -> None:
        """One record; ValueError for one that cannot be read."""
        parts = key.split("\x00")
        if key.startswith(BLOCK_PREFIX) and len(parts) == 3:
            bid = (parts[1], bytes.fromhex(parts[2]))
            if value is None:
                self._blockers.pop(bid, None)
            else:
                decoded = json.loads(value)
                self._blockers[bid] = (str(decoded["blocker"]), bool(decoded.get("follow", False)))
        elif key.startswith(PARK_PREFIX) and len(parts) == 4:
            bid, offset = (parts[1], bytes.fromhex(parts[2])), int(parts[3])
            entries = self._parked.setdefault(bid, set())
            if value is None:
                entries.discard(offset)
            else:
                entries.add(offset)
        else:
            raise ValueError(f"not an ordering record: {key!r}")

    def blocks(self) -> tuple[dict[BlockId, KeyBlock], list[BlockId]]:
        """The blocks, and the keys with parked tasks but no blocker. The worker never writes those;
        they appear only when Q.dedup's retention (7 days) deleted a blocker that waited longer. They
        are kept blocked with no blocker (nothing of the key runs out of order) and reported."""
        blocks = {bid: KeyBlock(blocker, sorted(self._parked.get(bid, ())), follow)
                  for bid, (blocker, follow) in self._blockers.items()}
        orphans = [bid for bid, entries in self._parked.items() if entries and bid not in blocks]
        for bid in orphans:
            blocks[bid] = KeyBlock("", sorted(self._parked[bid]))
        return blocks, orphans
