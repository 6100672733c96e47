"""The operations port of `kqueue consume --processes N`: one scrape and one pair of probes for all
children. Children write their metrics to prometheus-client's multiprocess files and their beats
next to them; the supervisor serves both, and forgets a child's live gauges when it dies."""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from pathlib import Path

from prometheus_client import CollectorRegistry, multiprocess

from kqueue.observe.health import LIVENESS_TIMEOUT, Verdict, liveness, read_beat, readiness
from kqueue.observe.install import CHILD_DIR_ENV, METRICS_PORT_ENV, beat_path
from kqueue.observe.server import OperationsServer


class ChildrenHealth:
    """Live when every child is; ready when every child is (a pod is one unit to Kubernetes)."""

    def __init__(self, directory: Path, processes: int, liveness_timeout: float = LIVENESS_TIMEOUT) -> None:
        self._directory = directory
        self._processes = processes
        self._bound = liveness_timeout
        self._lock = threading.Lock()
        self._children: dict[int, tuple[int, float]] = {}  # index -> (pid, started at)

    def started(self, index: int, pid: int) -> None:
        with self._lock:
            self._children[index] = (pid, time.time())

    def ended(self, index: int, pid: int) -> None:
        with self._lock:
            self._children.pop(index, None)
        multiprocess.mark_process_dead(pid, str(self._directory))  # type: ignore[no-untyped-call]  # its live gauges no longer count
        beat_path(self._directory, pid).unlink(missing_ok=True)

    def _each(self, decide: str) -> Verdict:
        now = time.time()
        with self._lock:
            children = sorted(self._children.items())
        if len(children) < self._processes:
            missing = self._processes - len(children)
            if decide == "ready":
                return False, f"{missing} of {self._processes} worker processes are restarting"
        for index, (pid, started) in children:
            beat = read_beat(beat_path(self._directory, pid))
            ok, reason = liveness(beat, started, now, self._bound) if decide == "live" else readiness(beat, now,
                                                                                                       self._bound)
            if not ok:
                return False, f"worker process {index} (pid {pid}): {reason}"
        return True, f"all {len(children)} worker processes: {'turning' if decide == 'live' else 'ready'}"

    def live(self) -> Verdict:
        return self._each("live")

    def ready(self) -> Verdict:
        return self._each("ready")


class SupervisorOperations:
    """The shared directory, the children's environment for it, and the port serving them."""

    def __init__(self, processes: int, port: int | None, host: str, liveness_timeout: float) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="kqueue-metrics-"))
        self.health = ChildrenHealth(self.directory, processes, liveness_timeout)
        self.server: OperationsServer | None = None
        if port is not None:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=str(self.directory))  # type: ignore[no-untyped-call]
            self.server = OperationsServer(registry, self.health, port, host).start()

    def child_env(self, base: dict[str, str]) -> dict[str, str]:
        env = {k: v for k, v in base.items() if k != METRICS_PORT_ENV}  # the port is the supervisor's
        if self.server is None:  # nothing would serve what the children measure
            return env
        return {**env, CHILD_DIR_ENV: str(self.directory), "PROMETHEUS_MULTIPROC_DIR": str(self.directory)}

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()
        shutil.rmtree(self.directory, ignore_errors=True)
