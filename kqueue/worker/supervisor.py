"""`--processes N`: N worker processes in one group, a dead one restarted, SIGTERM passed on."""

from __future__ import annotations

import logging
import signal
import subprocess
import time

log = logging.getLogger("kqueue.supervisor")
RESTART_BACKOFF = (1.0, 2.0, 5.0, 10.0)


def supervise(child_command: list[str], processes: int, grace: float) -> int:
    """Run `processes` copies of `child_command` until SIGTERM/SIGINT; returns the exit code.

    A child that dies is restarted after a growing pause (each child on its own clock, so the
    others stay watched and a stop request is honoured at once). On stop every child gets SIGTERM
    and time for its own drain (up to twice the grace: the drain, then the revoke on leaving).
    """
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    children: list[subprocess.Popen[bytes] | None] = [subprocess.Popen(child_command) for _ in range(processes)]
    restarts = [0] * processes
    restart_at: list[float | None] = [None] * processes
    while not stopping:
        time.sleep(0.2)
        now = time.monotonic()
        for i, child in enumerate(children):
            if stopping:
                break
            if child is None:
                due = restart_at[i]
                if due is not None and now >= due:
                    children[i] = subprocess.Popen(child_command)
                    restart_at[i] = None
                continue
            code = child.poll()
            if code is None:
                continue
            delay = RESTART_BACKOFF[min(restarts[i], len(RESTART_BACKOFF) - 1)]
            log.warning("worker process %d (pid %d) exited with %s; restarting in %.0fs", i, child.pid, code, delay)
            restarts[i] += 1
            children[i] = None
            restart_at[i] = now + delay
    running = [c for c in children if c is not None]
    for child in running:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 2 * grace + 45
    for child in running:
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    # A child that SIGTERM reached before it could install its own handler simply stopped: that is
    # what we asked for, not a failure.
    return next((c.returncode for c in running if c.returncode and c.returncode != -signal.SIGTERM), 0)
