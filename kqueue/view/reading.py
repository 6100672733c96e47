"""Turn records the ingest read into store updates, and decide when a commit is fenced. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from kqueue.core import names
from kqueue.core.headers import int_value
from kqueue.core.ids import derived_task_id
from kqueue.view.derive import Settled
from kqueue.view.store import DeadLetterRow, Position


def _int(values: Mapping[str, str], name: str) -> int | None:
    """An integer header sqlite can store (64-bit): anything else, absent or not a number is None."""
    missing = -(2**63)  # no header is this: tells "absent or not a number" apart from any value
    found = int_value(values, name, missing)
    return None if found == missing or not -(2**62) < found < 2**62 else found


def replay_generation(replay_of: str | None) -> int:
    """The DLQ offset a replayed task came from (`topic/partition/offset`), -1 for a first life."""
    if not replay_of:
        return -1
    try:
        return int(replay_of.rsplit("/", 1)[1])
    except (IndexError, ValueError):
        return -1


def position_of(topic: str, partition: int, offset: int, timestamp_ms: int, headers: Mapping[str, str],
                prefix: str = "") -> Position:
    """Where a task record says its task is: a lane, or a delay tier (with its due time)."""
    tier = names.tier_of_topic(topic)
    queue = names.queue_of_topic(topic, prefix)
    error_type, message = headers.get(names.H_ERROR_TYPE), headers.get(names.H_ERROR_MESSAGE)
    error = f"{error_type}: {message}" if error_type and message else (message or error_type)
    return Position(
        task_id=headers.get(names.H_ID) or derived_task_id(topic, partition, offset),
        queue=queue, task_type=headers.get(names.H_TYPE), topic=topic, partition=partition, offset=offset,
        generation=replay_generation(headers.get(names.H_REPLAY_OF)),
        attempt=min(max(1, _int(headers, names.H_ATTEMPT) or 1), 2**31 - 1), tier=tier, record_ms=timestamp_ms,
        not_before=_int(headers, names.H_NOT_BEFORE) if tier is not None else None,
        enqueued_ms=_int(headers, names.H_ENQUEUED_AT), max_attempts=_int(headers, names.H_MAX_ATTEMPTS),
        error=error, copy_of=_copy_of(topic, partition, offset, tier, headers.get(names.H_ORIGIN)),
    )


def _copy_of(topic: str, partition: int, offset: int, tier: str | None, origin: str | None) -> str | None:
    """The lane position a lane record was copied from (ordered retries), else None."""
    if tier is not None or not origin or origin == f"{topic}/{partition}/{offset}":
        return None
    return origin if origin.startswith(f"{topic}/{partition}/") else None


def dead_letter_of(topic: str, partition: int, offset: int, headers: Mapping[str, str],
                   prefix: str = "") -> DeadLetterRow:
    error_type, message = headers.get(names.H_ERROR_TYPE, ""), headers.get(names.H_ERROR_MESSAGE, "")
    return DeadLetterRow(
        queue=names.queue_of_topic(topic, prefix), partition=partition, offset=offset,
        task_id=headers.get(names.H_ID) or f"{topic}/{partition}/{offset}", task_type=headers.get(names.H_TYPE, ""),
        attempts=min(max(1, _int(headers, names.H_ATTEMPT) or 1), 2**31 - 1),
        failed_at=_int(headers, names.H_FAILED_AT) or 0,
        error=f"{error_type}: {message}" if error_type else message)


@dataclass(frozen=True)
class PendingFence:
    """A commit read from the group, waiting until the view has read every outcome up to the ends of
    the outcome topics taken after it (a transaction's markers land partition by partition, so the
    offset commit can be visible before the retry it committed with)."""

    committed: dict[tuple[str, int], tuple[int, str]]  # lane partition -> (offset, metadata)
    targets: dict[tuple[str, int], int]  # outcome partition -> its last stable offset then
    taken_ms: int

    def reached(self, read: Mapping[tuple[str, int], int]) -> bool:
        return all(read.get(tp, 0) >= end for tp, end in self.targets.items() if end > 0)

    def settled(self, now_ms: int, previous: Mapping[tuple[str, int], Settled]) -> dict[tuple[str, int], Settled]:
        """The partitions whose commit moved (their publish time is a completed task's finish time)."""
        out: dict[tuple[str, int], Settled] = {}
        for tp, (offset, metadata) in self.committed.items():
            before = previous.get(tp)
            if before is None or before.committed != offset or before.metadata != metadata:
                out[tp] = Settled(offset, metadata, now_ms)
        return out


Commits = Mapping[tuple[str, int], tuple[int, str]]  # partition -> (offset, metadata)
GROUP_GRACE = 60.0  # seconds a group that had members still counts once it has none


def counted_groups(members: Mapping[str, bool], seen_live: Mapping[str, float], now: float,
                   grace: float = GROUP_GRACE) -> list[str]:
    """The groups whose commits can mean `completed`: those with members now, or seen with members
    within `grace` seconds (a worker restarting leaves its group empty for a moment, and what it has
    not done yet is still not done). A group with commits but no members (renamed or retired) would
    hold its queue's tasks at `queued` until Kafka expires its offsets (offsets.retention, 7 days):
    it does not count. `members`: group -> has members now; `seen_live`: group -> last seen so."""
    return sorted(g for g, live in members.items() if live or (g in seen_live and now - seen_live[g] <= grace))


def lowest_commits(per_group: list[Commits]) -> dict[tuple[str, int], tuple[int, str]]:
    """Several groups consuming one queue: a task is settled once every group settled it (a group
    with no commit on a partition has settled nothing there)."""
    if not per_group:
        return {}
    out: dict[tuple[str, int], tuple[int, str]] = {}
    for tp in set.intersection(*(set(c) for c in per_group)):
        offset, metadata = min(c[tp] for c in per_group)
        if offset >= 0:
            out[tp] = (offset, metadata)
    return out
