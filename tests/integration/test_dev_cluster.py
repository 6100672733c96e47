"""`kqueue dev up/status/down` drive a real local cluster, as a user would from the shell."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kqueue.dev.cluster import DevCluster, port_open, process_alive
from tests.support.brokers import free_base_port


def kqueue(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "KQUEUE_BOOTSTRAP_SERVERS"}
    return subprocess.run([sys.executable, "-m", "kqueue", *args], capture_output=True, text=True,
                          env=env, timeout=180, check=False)


def test_up_is_idempotent_and_down_leaves_nothing(tmp_path: Path) -> None:
    base = free_base_port(1, 17092)
    data = str(tmp_path / "cluster")
    # A new user's first command: an empty data dir, first try (this once reported the freshly
    # started node as exited, because its /proc cmdline was read before the JVM had exec'd).
    first = kqueue("dev", "up", "--base-port", str(base), "--data-dir", data)
    assert first.returncode == 0, first.stderr
    assert f"127.0.0.1:{base}" in first.stdout
    pid = DevCluster(Path(data)).status()[0].pid
    assert pid is not None

    demo = kqueue("--bootstrap-servers", f"127.0.0.1:{base}", "demo", "--tasks", "40")
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "40 of 40 tasks settled" in demo.stdout

    again = kqueue("dev", "up", "--base-port", str(base), "--data-dir", data)
    assert again.returncode == 0, again.stderr
    assert "already running" in again.stdout
    assert DevCluster(Path(data)).status()[0].pid == pid  # same process, not a second broker

    conflict = kqueue("dev", "up", "--nodes", "3", "--base-port", str(base), "--data-dir", data)
    assert conflict.returncode != 0
    assert "already running" in conflict.stderr and "Traceback" not in conflict.stderr

    status = kqueue("dev", "status", "--data-dir", data)
    assert status.returncode == 0 and "running" in status.stdout

    down = kqueue("dev", "down", "--data-dir", data)
    assert down.returncode == 0 and "stopped 1 node" in down.stdout
    assert not process_alive(pid)  # gone or a zombie awaiting its reaper: not running
    assert not port_open(base) and not port_open(base + 100)
    assert kqueue("dev", "status", "--data-dir", data).returncode == 3


def test_bad_node_count_is_one_line_error(tmp_path: Path) -> None:
    result = kqueue("dev", "up", "--nodes", "2", "--data-dir", str(tmp_path))
    assert result.returncode != 0
    assert "--nodes must be 1 or 3" in result.stderr
    assert "Traceback" not in result.stderr


def test_up_waits_for_a_node_that_is_slow_to_exec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The window between fork and exec, widened on purpose: the node must count as starting, not exited."""
    real_popen = subprocess.Popen

    def slow_exec(args: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        return real_popen(["sh", "-c", 'sleep 0.7; exec "$@"', "sh", *args], **kwargs)

    monkeypatch.setattr("kqueue.dev.cluster.subprocess.Popen", slow_exec)
    cluster = DevCluster(tmp_path / "slow")
    try:
        state, reused = cluster.up(nodes=1, base_port=free_base_port(1, 17592))
        assert not reused
        assert cluster.running()
        assert port_open(state.base_port)
    finally:
        cluster.down(purge=True)
