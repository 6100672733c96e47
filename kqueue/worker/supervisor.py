"""`--processes N`: N worker processes in one group, a dead one restarted, SIGTERM passed on."""

from __future__ import annotations

import logging
import signal
import subprocess
import time

log = logging.getLogger("kqueue.supervisor")
RESTART_BACKOFF = (1.0, 2.0, 5.0, 10.0)


def supervise(child_command: list[str], processes: int, grace: float) -> int:
    """Run `processes` copies of `child_command` until SIGTERM/SIGINT; returns the exit code."""
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    children: list[subprocess.Popen[bytes]] = [subprocess.Popen(child_command) for _ in range(processes)]
    restarts = [0] * processes
    while not stopping:
        time.sleep(0.2)
        for i, child in enumerate(children):
            code = child.poll()
            if code is None or stopping:
                continue
            delay = RESTART_BACKOFF[min(restarts[i], len(RESTART_BACKOFF) - 1)]
            log.warning("worker process %d (pid %d) exited with %s; restarting in %.0fs", i, child.pid, code, delay)
            time.sleep(delay)
            restarts[i] += 1
            children[i] = subprocess.Popen(child_command)
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace + 15
    for child in children:
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    return max((c.returncode or 0 for c in children), default=0) if any(c.returncode for c in children) else 0
