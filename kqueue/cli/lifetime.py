"""Processes a kqueue command starts end with it: on SIGTERM, on SIGINT, and on Linux even when the
command is killed outright (SIGKILL, OOM killer).

Two halves. The parent starts its children through `ChildProcesses`, which turns SIGTERM/SIGINT
into an orderly stop of every child before the command exits. Each child, being `python -m kqueue`
too, calls `die_with_parent()` first thing: the kernel then sends it SIGTERM if its parent dies
without stopping it (prctl PR_SET_PDEATHSIG), so it drains and exits as if told to.
(`kqueue dev up` is the exception by design: its brokers outlive the CLI until `kqueue dev down`.)
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from types import FrameType, TracebackType
from typing import Any

PARENT_ENV = "KQUEUE_PARENT_PID"  # set for a child: the pid it must not outlive
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def child_env(env: Mapping[str, str]) -> dict[str, str]:
    """`env` for a kqueue child that must not outlive this process."""
    return {**env, PARENT_ENV: str(os.getpid())}


def die_with_parent() -> None:
    """In a child started with `child_env`: get SIGTERM when the parent dies. The variable is removed
    so this process's own children do not inherit it. The death signal survives the worker's execv
    restart. (The kernel ties it to the parent's thread that started us: kqueue starts children from
    the main thread.)"""
    parent = os.environ.pop(PARENT_ENV, "")
    if not parent.isdigit():
        return
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    if os.getppid() != int(parent):  # it died before we asked: no signal will come
        os.kill(os.getpid(), signal.SIGTERM)


class Stopped(SystemExit):
    """SIGTERM or SIGINT reached a command that has children: unwinds it (running every `finally`)
    and exits with the shell's code for the signal, 128 + its number, without a traceback."""

    def __init__(self, signum: int) -> None:
        super().__init__(128 + signum)
        self.signum = signum


class ChildProcesses:
    """The processes a command starts, each stopped (SIGTERM, then SIGKILL after its own time) when
    the command stops them, when the `with` block ends, or when SIGTERM/SIGINT ends the command.

    The first stop signal raises `Stopped` where the command is; signals that arrive while children
    are being stopped are held until that is done, so a second Ctrl-C cannot leave one behind."""

    def __init__(self) -> None:
        self._children: list[tuple[subprocess.Popen[bytes], float]] = []
        self._stopping = False
        self._pending: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> ChildProcesses:
        for sig in STOP_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._on_signal)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 trace: TracebackType | None) -> None:
        try:
            self._stop_all([child for child, _ in self._children], for_good=True)
        finally:
            for sig, handler in self._previous.items():
                signal.signal(sig, handler)
        if self._pending is not None and exc is None:
            raise Stopped(self._pending)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if self._stopping:
            self._pending = signum
            return
        raise Stopped(signum)

    def start(self, argv: Sequence[str], env: Mapping[str, str], stop_within: float = 20.0,
              **popen: Any) -> subprocess.Popen[bytes]:
        """Start `python -m kqueue ...` (or any command) that ends with this one; `stop_within`:
        seconds it gets after SIGTERM before it is killed."""
        child: subprocess.Popen[bytes] = subprocess.Popen(list(argv), env=child_env(env), **popen)
        self._children.append((child, stop_within))
        return child

    def stop(self, child: subprocess.Popen[bytes]) -> int:
        """SIGTERM, the child's time to finish, SIGKILL if it needs more; its exit code."""
        self._stop_all([child])
        pending, self._pending = self._pending, None
        if pending is not None:
            raise Stopped(pending)
        code = child.returncode
        assert code is not None
        return code

    def _stop_all(self, children: list[subprocess.Popen[bytes]], for_good: bool = False) -> None:
        self._stopping = True
        try:
            for child in children:  # all asked at once: they stop side by side
                if child.poll() is None:
                    child.send_signal(signal.SIGTERM)
            for child in children:
                try:
                    child.wait(self._time_of(child))
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()
        finally:
            self._stopping = for_good  # at the end: held until the old handlers are back

    def _time_of(self, child: subprocess.Popen[bytes]) -> float:
        return next((within for known, within in self._children if known is child), 20.0)


def wait_until_stopped(child: subprocess.Popen[bytes]) -> None:
    """Wait for `child`; Ctrl-C or SIGTERM ends the wait instead of the command."""
    with contextlib.suppress(KeyboardInterrupt, Stopped):
        child.wait()
