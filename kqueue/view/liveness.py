"""Whether a worker is still there, from its reports to `_kqueue.workers`. Pure.

A worker reports about once a second (`kqueue consume`) and a last time as it stops. One that stops
reporting without that last report (SIGKILL, a lost node) leaves its last report in the compacted
topic, naming partitions and running tasks it no longer has: after a few report intervals of
silence it is shown as gone, with nothing running, and after a while it leaves the list.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

REPORT_INTERVAL_MS = 1000  # how often `kqueue consume` reports
GONE_AFTER_REPORTS = 5  # reports missed in a row before a worker counts as gone
DROP_AFTER_MS = 10 * 60_000  # how long a gone worker stays listed


def worker_state(at_ms: int, interval_ms: int, now_ms: int, stopping: bool = False,
                 drop_after_ms: int = DROP_AFTER_MS) -> str:
    """`up`, `stopping` (its last report said so), `gone` (silent for GONE_AFTER_REPORTS intervals),
    `stopped` (gone after saying it was stopping) or `dropped` (silent for `drop_after_ms`)."""
    silent = now_ms - at_ms
    if silent > drop_after_ms:
        return "dropped"
    if silent > GONE_AFTER_REPORTS * interval_ms:
        return "stopped" if stopping else "gone"
    return "stopping" if stopping else "up"


@dataclass(frozen=True)
class WorkerLiveness:
    """`kqueue api --worker-report-interval --drop-workers-after`, in milliseconds."""

    report_interval_ms: int = REPORT_INTERVAL_MS
    drop_after_ms: int = DROP_AFTER_MS

    @property
    def silent_ms(self) -> int:
        """A report older than this is from a worker that is gone (its tasks are not running)."""
        return GONE_AFTER_REPORTS * self.report_interval_ms

    def shown(self, workers: list[dict[str, Any]], now_ms: int) -> list[dict[str, Any]]:
        """The workers as the API lists them: each with its `state`; one that is no longer there with
        nothing busy, running or assigned; dropped ones left out."""
        out = []
        for worker in workers:
            state = worker_state(worker["at_ms"], self.report_interval_ms, now_ms, bool(worker["stopping"]),
                                 self.drop_after_ms)
            if state == "dropped":
                continue
            shown = {**worker, "state": state}
            if state in ("gone", "stopped"):
                shown.update(busy=0, running=0, partitions=[])
            out.append(shown)
        return out
