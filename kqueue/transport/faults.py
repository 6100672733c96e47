"""Fault injection for the chaos tests (tests/chaos), and for nothing else.

A test starts a real worker process with KQUEUE_FAULT set; unset (always, outside those tests) every
hook here does nothing. "before-commit": the process exits after a batch's records were produced and
before its commit. "abort-first": the first transaction with records fails as one the broker aborted.
"fail-commits:S": every commit with records fails (as an outage would) for S seconds from the first.
"""

from __future__ import annotations

import os
import threading
import time

FAULT = os.environ.get("KQUEUE_FAULT", "")
_aborted = threading.Event()  # "abort-first" has fired


def crash_before_commit(records: int) -> None:
    """Exit the process (code 86) between producing a batch's records and committing them."""
    if FAULT == "before-commit" and records:
        os._exit(86)


def wants_records_on_log(records: int) -> bool:
    """Whether to flush the batch's records into the log (uncommitted) before crashing."""
    return FAULT == "before-commit" and records > 0


def abort_this_transaction(records: int) -> bool:
    """True once: the first transaction with records is to fail as if the broker aborted it."""
    if FAULT != "abort-first" or not records or _aborted.is_set():
        return False
    _aborted.set()
    return True


_refusing_since: list[float] = []  # when "fail-commits" started refusing


def refuse_commit(records: int) -> bool:
    """True while "fail-commits:S" is refusing commits (S seconds from the first commit with records)."""
    if not FAULT.startswith("fail-commits:") or not records:
        return False
    if not _refusing_since:
        _refusing_since.append(time.monotonic())
    return time.monotonic() - _refusing_since[0] < float(FAULT.split(":", 1)[1])
