"""`--processes N`: N worker processes in one group, a dead one restarted, SIGTERM passed on."""

from __future__ import annotations

import logging
import signal
import subprocess
import time
from collections.abc import Mapping
from typing import Protocol

log = logging.getLogger("kqueue.supervisor")
RESTART_BACKOFF = (0.0, 1.0, 2.0, 5.0, 10.0)
HEALTHY_RUN = 30.0  # a child that lived this long before dying is restarted at once again


def restart_delay(restarts_in_a_row: int) -> float:
    """Pause before restarting a dead child: none at first (with static membership it takes its
    partitions back before its session expires), growing while it keeps dying young."""
    return RESTART_BACKOFF[min(restarts_in_a_row, len(RESTART_BACKOFF) - 1)]


class ChildWatcher(Protocol):
    """Told when a child starts and ends (the operations port reports on the children)."""

    def started(self, index: int, pid: int) -> None: ...
    def ended(self, index: int, pid: int) -> None: ...


def supervise(child_commands: list[list[str]], grace: float, env: Mapping[str, str] | None = None,
              watcher: ChildWatcher | None = None) -> int:
    """Run one child per command until SIGTERM/SIGINT; returns the exit code.

    A child that dies is restarted with the same command (so the same instance id), at once, or
    after a growing pause while it keeps dying within HEALTHY_RUN of its start (each child on its own
    clock, so the others stay watched and a stop request is honoured at once). On stop every child
    gets SIGTERM and time for its own drain (up to twice the grace: the drain, then the revoke on
    leaving).
    """
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    processes = len(child_commands)
    def spawn(index: int) -> subprocess.Popen[bytes]:
        child = subprocess.Popen(child_commands[index], env=None if env is None else dict(env))
        if watcher is not None:
            watcher.started(index, child.pid)
        return child

    children: list[subprocess.Popen[bytes] | None] = [spawn(i) for i in range(processes)]
    started = [time.monotonic()] * processes
    restarts = [0] * processes  # in a row, each after a short life
    restart_at: list[float | None] = [None] * processes
    while not stopping:
        time.sleep(0.1)
        now = time.monotonic()
        for i, child in enumerate(children):
            if stopping:
                break
            if child is None:
                due = restart_at[i]
                if due is not None and now >= due:
                    children[i] = spawn(i)
                    started[i], restart_at[i] = now, None
                continue
            code = child.poll()
            if code is None:
                continue
            if watcher is not None:
                watcher.ended(i, child.pid)
            if now - started[i] >= HEALTHY_RUN:
                restarts[i] = 0
            delay = restart_delay(restarts[i])
            log.warning("worker process %d (pid %d) exited with %s; restarting %s", i, child.pid, code,
                        "now" if delay == 0 else f"in {delay:.0f}s")
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
