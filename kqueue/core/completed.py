"""Completed offsets above a committed position, carried in the commit's metadata. Pure.

A commit can only advance to the oldest unsettled task, so after a crash or a hand-over every task
above it runs again, including those that had completed. The commit's metadata string (the broker
keeps up to offset.metadata.max.bytes, 4096 by default, per partition) records which offsets above
the position had completed: the next owner settles those without running them.

Encoding: `kq1:<count>:<base64 of zlib(bitmap)>`, bit i set when offset position+i completed. When
the bitmap does not fit the budget, a shorter prefix of it is written (never nothing but the
position), so the metadata never stops progress: it only saves fewer re-runs.
"""

from __future__ import annotations

import base64
import zlib
from collections.abc import Iterable

PREFIX = "kq1:"
METADATA_BUDGET = 3000  # characters; under the broker's 4096-byte default with room to spare
# How far past its commit position a partition may run (offsets) before it pauses until the position
# moves: its bitmap (1,500 bytes) then always fits the budget whole, even when incompressible, and the
# memory behind one stuck task stays bounded (Parallel Consumer pauses the same way).
MAX_AHEAD = 12_000


def encode(position: int, completed: Iterable[int], budget: int = METADATA_BUDGET) -> str:
    """The metadata for a commit at `position` whose tasks at `completed` (offsets) had completed."""
    above = sorted(o - position for o in completed if o >= position)
    if not above:
        return ""
    span = above[-1] + 1
    while span > 0:
        bits = bytearray((span + 7) // 8)
        for i in above:
            if i >= span:
                break
            bits[i // 8] |= 1 << (i % 8)
        text = f"{PREFIX}{span}:{base64.b64encode(zlib.compress(bytes(bits), 9)).decode()}"
        if len(text) <= budget:
            return text
        span //= 2  # too many to say: say what fits about the offsets nearest the position
    return ""


def decode(position: int, metadata: str | None) -> set[int]:
    """Offsets above `position` that had completed; empty for metadata kqueue did not write."""
    if not metadata or not metadata.startswith(PREFIX):
        return set()
    try:
        count_text, payload = metadata[len(PREFIX):].split(":", 1)
        span = int(count_text)
        bits = zlib.decompress(base64.b64decode(payload))
    except (ValueError, zlib.error):
        return set()  # not ours after all, or damaged: re-running is the safe side
    return {position + i for i in range(min(span, len(bits) * 8)) if bits[i // 8] >> (i % 8) & 1}
