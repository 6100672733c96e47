"""No kqueue command leaves a process behind: stopped with SIGTERM or SIGINT (and the demo even when
killed outright), every process it started, and every process those started, ends within seconds.

The commands that start processes: `kqueue demo` (a `kqueue consume` and a `kqueue api`, whose
status view reads Kafka in a child of its own), `kqueue consume --processes N` (N workers under a
supervisor) and `kqueue api` (the status view's ingest). Each runs as a user starts it; its
descendants are read from /proc before the signal, then watched until they are gone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.http import free_port
from tests.support.kafka import Kafka, unique
from tests.support.worker import wait_for

ROOT = Path(__file__).resolve().parents[2]
GONE_WITHIN = 15.0  # seconds: the workers' drain of a few in-flight millisecond tasks, and the API's shutdown

Process = tuple[int, str]  # (pid, its start time in clock ticks): a pid reused later is another process


def _stat(pid: int) -> list[str] | None:
    """/proc/<pid>/stat's fields after the command name (state first), or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return text[text.rindex(")") + 2:].split()


def _descendants(root: int) -> set[Process]:
    """Every live process below `root`, at any depth."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields is not None:
                parents.setdefault(int(fields[1]), []).append(int(entry.name))
    found: set[Process] = set()
    todo = list(parents.get(root, []))
    while todo:
        pid = todo.pop()
        fields = _stat(pid)
        if fields is not None and fields[0] != "Z":
            found.add((pid, fields[19]))
            todo += parents.get(pid, [])
    return found


def _alive(process: Process) -> bool:
    fields = _stat(process[0])
    return fields is not None and fields[19] == process[1] and fields[0] != "Z"  # a zombie has ended


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return ""


def _commands(root: int) -> list[str]:
    return [_cmdline(pid) for pid, _ in _descendants(root)]


@contextmanager
def _command(bootstrap: str, log: Path, *args: str, env: dict[str, str] | None = None
             ) -> Iterator[subprocess.Popen[bytes]]:
    """`kqueue ARGS` as a user runs it; anything still running at the end is killed (so a failing
    test leaves nothing behind either)."""
    env = {**os.environ, "KQUEUE_BOOTSTRAP_SERVERS": bootstrap, "KQUEUE_API_TOKEN": "", **(env or {})}
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "kqueue", *args], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    seen: set[Process] = set()
    try:
        yield proc
    finally:
        seen |= _descendants(proc.pid)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid, _ in [p for p in seen if _alive(p)]:
            os.kill(pid, signal.SIGKILL)


def _stops_with_everything_it_started(proc: subprocess.Popen[bytes], sig: signal.Signals, log: Path,
                                      ready: Callable[[list[str]], bool]) -> None:
    wait_for(lambda: ready(_commands(proc.pid)) or proc.poll() is not None, 90, "the command's processes to start")
    assert proc.poll() is None, log.read_text()[-3000:]
    started = _descendants(proc.pid)
    assert started
    os.kill(proc.pid, sig)
    deadline = time.monotonic() + GONE_WITHIN
    while time.monotonic() < deadline and (proc.poll() is None or any(_alive(p) for p in started)):
        time.sleep(0.1)
    left = {pid: _cmdline(pid) for pid, _ in [p for p in started if _alive(p)]}
    assert left == {}, f"still running {GONE_WITHIN:.0f}s after {sig.name} to the command: {left}"
    assert proc.poll() is not None, f"the command itself did not stop on {sig.name}"


def _is_kqueue(command: str, name: str) -> bool:
    words = command.split()
    return "kqueue" in words and name in words[words.index("kqueue"):]  # after `-m kqueue [global options]`


def _is_consume(command: str) -> bool:
    return _is_kqueue(command, "consume")


def _is_api(command: str) -> bool:
    return _is_kqueue(command, "api")


def _is_spawned(command: str) -> bool:
    return "multiprocessing" in command and "spawn_main" in command


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL], ids=lambda s: s.name)
def test_kqueue_demo_takes_its_worker_and_its_api_with_it(kafka: Kafka, tmp_path: Path, sig: signal.Signals) -> None:
    log = tmp_path / "demo.out"
    # Enough tasks (with retries through the 1 s tier) that the demo is still running when it is stopped.
    # Topics of its own: what a stopped demo leaves unprocessed must not reach another test's demo.
    with _command(kafka.bootstrap, log, "demo", "--tasks", "400", "--no-serve", "--timeout", "120",
                  env={"KQUEUE_TOPIC_PREFIX": f"{unique('stopped')}."}) as proc:
        # Caught with every process up: the worker, the API and the API's status-view reader.
        _stops_with_everything_it_started(
            proc, sig, log, lambda cmds: any(map(_is_consume, cmds)) and any(map(_is_api, cmds))
            and any(map(_is_spawned, cmds)))
        if sig != signal.SIGKILL:  # an orderly stop: the shell's code for the signal, no traceback
            assert proc.returncode == 128 + sig, log.read_text()[-3000:]
            assert "Traceback" not in log.read_text()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_kqueue_consume_processes_stops_every_worker(kafka: Kafka, tmp_path: Path, sig: signal.Signals) -> None:
    queue = unique("kids")
    kafka.create_topic(queue, partitions=2)
    log = tmp_path / "consume.out"
    with _command(kafka.bootstrap, log, "consume", "--app", "tests.apps.recorder:app", "--group", unique("kids-g"),
                  "--processes", "2", "--log-level", "WARNING",
                  env={"KQ_TEST_QUEUE": queue, "KQ_TEST_LOG": str(tmp_path / "done.log")}) as proc:
        _stops_with_everything_it_started(proc, sig, log, lambda cmds: sum(map(_is_consume, cmds)) == 2)
        assert proc.returncode == 0, log.read_text()[-3000:]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_kqueue_api_stops_its_status_view_reader(kafka: Kafka, tmp_path: Path, sig: signal.Signals) -> None:
    log = tmp_path / "api.out"
    with _command(kafka.bootstrap, log, "api", "--app", "kqueue.demo.tasks:app", "--port", str(free_port()),
                  "--db", str(tmp_path / "view.db")) as proc:
        _stops_with_everything_it_started(proc, sig, log, lambda cmds: any(map(_is_spawned, cmds)))
        # Stopped, not killed by its own signal: it shut its status view's reader down on the way out.
        assert proc.returncode == 0, log.read_text()[-3000:]
        assert "Traceback" not in log.read_text()
