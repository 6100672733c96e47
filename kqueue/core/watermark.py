"""Which offset of a partition may be committed: everything below it is settled. Pure."""

from __future__ import annotations

from collections import deque


class PartitionWatermark:
    """Tracks offsets handed out for one partition (in increasing order) and which are settled.

    `position()` is the offset to commit: the oldest unsettled tracked offset, or one past the
    newest settled offset when nothing is outstanding. Gaps in offsets (transaction markers,
    compaction) are fine: only tracked offsets matter.
    """

    __slots__ = ("_next", "_order", "_settled")

    def __init__(self) -> None:
        self._order: deque[int] = deque()
        self._settled: set[int] = set()
        self._next: int | None = None  # one past the newest offset settled in order

    def track(self, offset: int) -> None:
        if self._order and offset <= self._order[-1]:
            raise ValueError(f"offset {offset} tracked out of order after {self._order[-1]}")
        if self._next is not None and offset < self._next:
            raise ValueError(f"offset {offset} is below the settled position {self._next}")
        self._order.append(offset)

    def settle(self, offset: int) -> None:
        self._settled.add(offset)

    @property
    def newest(self) -> int | None:
        """The newest offset tracked and not yet passed by the position (None: none)."""
        return self._order[-1] if self._order else None

    @property
    def outstanding(self) -> int:
        return len(self._order) - len(self._settled)

    def position(self) -> int | None:
        """The offset to commit now (None if nothing was ever tracked)."""
        order, settled = self._order, self._settled
        while order and order[0] in settled:
            offset = order.popleft()
            settled.discard(offset)
            self._next = offset + 1
        if order:
            return order[0]
        return self._next
