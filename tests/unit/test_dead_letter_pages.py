"""The status view's dead-letter pages (sqlite, no broker): newest first in one stable order, paged
by offset, filtered by exact task type and by a substring of the error taken literally, with the
matching total counted by the same filter."""

from __future__ import annotations

from pathlib import Path

import pytest

from kqueue.core.status import TaskEvent
from kqueue.view.store import DeadLetterRow, IngestBatch, StatusStore

NOW = 1_800_000_000_000


@pytest.fixture
def store(tmp_path: Path) -> StatusStore:
    store = StatusStore(tmp_path / "v.db")
    errors = ["TimeoutError: upstream timed out", "ValueError: size 100% too big", "KeyError: 'a_b'"]
    letters = [DeadLetterRow("q", i % 3, i, f"t{i}", "resize" if i % 2 else "email", 1,
                             NOW + i // 4,  # four letters share each millisecond
                             errors[i % 3]) for i in range(120)]
    letters.append(DeadLetterRow("other", 0, 0, "o1", "email", 1, NOW, errors[0]))
    store.write(IngestBatch(dead_letters=letters), NOW)
    return store


def ids(rows: list[tuple[DeadLetterRow, bool]]) -> list[str]:
    return [row.task_id for row, _ in rows]


def test_pages_follow_one_order_without_repeats_or_gaps(store: StatusStore) -> None:
    pages = [ids(store.dead_letters("q", 50, offset)) for offset in (0, 50, 100)]
    assert [len(p) for p in pages] == [50, 50, 20]
    everything = [task for page in pages for task in page]
    assert sorted(everything) == sorted(f"t{i}" for i in range(120))  # each once, none of the other queue
    assert everything[:4] == ["t119", "t116", "t118", "t117"]  # newest first; ties by partition, offset
    assert store.count_dead_letters("q") == 120


def test_type_filter_is_exact_and_error_filter_a_literal_substring(store: StatusStore) -> None:
    resize = ids(store.dead_letters("q", 1000, task_type="resize"))
    assert len(resize) == 60 and all(int(t[1:]) % 2 for t in resize)
    assert store.count_dead_letters("q", task_type="resiz") == 0
    timed_out = ids(store.dead_letters("q", 1000, error="TIMED out"))  # ASCII case does not matter
    assert len(timed_out) == 40 and all(int(t[1:]) % 3 == 0 for t in timed_out)
    # LIKE's wildcards in the text are plain characters: "%" and "_" match only themselves.
    assert store.count_dead_letters("q", error="100%") == 40
    assert store.count_dead_letters("q", error="0% too") == 40
    assert store.count_dead_letters("q", error="%") == 40
    assert store.count_dead_letters("q", error="a_b") == 40
    assert store.count_dead_letters("q", error="a_") == 40 and store.count_dead_letters("q", error="ab") == 0
    both = ids(store.dead_letters("q", 1000, task_type="email", error="timeout"))
    assert both and all(int(t[1:]) % 6 == 0 for t in both)
    assert store.count_dead_letters("q", task_type="email", error="timeout") == len(both) == 20


def test_a_replayed_letter_is_no_longer_pending(store: StatusStore) -> None:
    store.write(IngestBatch(events=[TaskEvent("t119", "q", "resize", "queued", 1, NOW + 60_000)]), NOW)
    pending = dict((row.task_id, flag) for row, flag in store.dead_letters("q", 2))
    assert pending == {"t119": False, "t116": True}
