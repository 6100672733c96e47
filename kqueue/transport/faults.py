"""Fault injection for the chaos tests (tests/chaos), and for nothing else.

A test starts a real worker process with KQUEUE_FAULT set; unset (always, outside those tests) every
hook here does nothing. "before-commit": the process exits after a batch's records were produced and
before its commit. "abort-first": the first transaction with records fails as one the broker aborted.
"""

from __future__ import annotations

import os
import threading

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
