"""Sorting Kafka transaction errors into retry / abort / fatal, in one place (librdkafka's contract).

A retriable error: call the same step again. One that requires an abort: abort, and the batch may be
tried again in a new transaction. A fatal one: the producer is unusable, the worker must stop.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from typing import TypeVar

from confluent_kafka import KafkaError, KafkaException

T = TypeVar("T")


class TxnAction(enum.Enum):
    RETRY = "retry"
    ABORT = "abort"
    FATAL = "fatal"


# Errors the same batch will meet again however often it is tried: the batch itself cannot commit.
_PERMANENT_CODES = frozenset({
    KafkaError.MSG_SIZE_TOO_LARGE,
    KafkaError.INVALID_MSG_SIZE,
    KafkaError.RECORD_LIST_TOO_LARGE,
    KafkaError.INVALID_RECORD,
    KafkaError.INVALID_MSG,
    KafkaError.TOPIC_AUTHORIZATION_FAILED,
    KafkaError.TOPIC_EXCEPTION,
})


def classify(error: KafkaError) -> TxnAction:
    if error.fatal():
        return TxnAction.FATAL
    if error.txn_requires_abort():
        return TxnAction.ABORT
    if error.retriable():
        return TxnAction.RETRY
    return TxnAction.ABORT  # neither: waiting gains nothing; abort and try the batch again


def is_permanent(error: KafkaError) -> bool:
    """True when the batch's own records are refused (too large, not allowed): trying again won't help."""
    return error.code() in _PERMANENT_CODES


def error_of(exc: KafkaException) -> KafkaError:
    error = exc.args[0] if exc.args else None
    return error if isinstance(error, KafkaError) else KafkaError(KafkaError._FAIL, str(exc))


def retrying(step: Callable[[], T], budget: float, pause: float = 0.2,
             sleep: Callable[[float], None] = time.sleep) -> T:
    """Run one transaction step, again while it fails retriably and `budget` seconds are left."""
    deadline = time.monotonic() + budget
    while True:
        try:
            return step()
        except KafkaException as exc:
            if classify(error_of(exc)) is not TxnAction.RETRY or time.monotonic() + pause > deadline:
                raise
        sleep(pause)


# A producer fenced while ending its transaction: with a transactional.id no other live producer
# shares, the only one that bumps its epoch is the coordinator, aborting the transaction at its
# timeout (e.g. after a broker outage) before the commit reached it.
FENCED_CODES = frozenset({KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH})

Commit = dict[tuple[str, int], tuple[int, str]]  # partition -> (offset, metadata)


def commit_outcome(ours: Commit, committed: Commit) -> str:
    """Did the batch's transaction commit? Its offsets (and metadata, which changes whenever the
    offset does not) are visible to the group if and only if it did: `landed`, `aborted`, or
    `unknown` when some partitions show it and others do not (no atomic outcome looks like that)."""
    if not ours:
        return "unknown"
    shown = [committed.get(tp) == mine for tp, mine in ours.items()]
    if all(shown):
        return "landed"
    if not any(shown):
        return "aborted"
    return "unknown"
