"""Run the Go and Maven builds of interop/ from pytest, with caches that outlive a run.

Go writes everything (GOPATH, GOMODCACHE, GOCACHE) under kqueue's cache (`kqueue.dev.paths.cache_root()`,
i.e. ~/.cache/kqueue or $KQUEUE_CACHE_DIR), so it works with an empty or read-only HOME like
.ci/install-helm, and a second run reuses the compiled franz-go. Maven uses its own local repository
(~/.m2, shared with interop/java/vectors and `kqueue dev fetch`), or one under kqueue's cache when
HOME is not writable.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from kqueue.dev.paths import cache_root

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMAS_DIR = REPO_ROOT / "schemas"
GO_DIR = REPO_ROOT / "interop" / "go"
JAVA_PRODUCER_DIR = REPO_ROOT / "interop" / "java" / "producer"

# A cold build downloads modules / artifacts and compiles franz-go: about a minute on two idle cores,
# three under heavy load. The tests that build raise their pytest-timeout above this so that this
# message, with the tool's output, is what a timeout shows.
BUILD_TIMEOUT_S = 500
TEST_TIMEOUT_S = 600


def _home_writable() -> bool:
    home = os.environ.get("HOME", "")
    return bool(home) and os.path.isdir(home) and os.access(home, os.W_OK)


def go_binary() -> str:
    found = shutil.which("go") or "/usr/local/go/bin/go"
    if not os.access(found, os.X_OK):
        pytest.fail("the Go producer test needs a Go toolchain: none on PATH nor at /usr/local/go/bin/go "
                    "(install Go 1.26+)", pytrace=False)
    return found


def go_env() -> dict[str, str]:
    root = cache_root() / "interop" / "go"
    env = {
        **os.environ,
        "GOPATH": str(root / "path"),
        "GOMODCACHE": str(root / "path" / "pkg" / "mod"),
        "GOCACHE": str(root / "cache"),
        "GOFLAGS": "-mod=mod -modcacherw",  # -modcacherw: the cache stays removable by rm -rf
        "GOTOOLCHAIN": "local",
        "CGO_ENABLED": "0",
    }
    if not _home_writable():
        env["HOME"] = str(root)
    return env


def mvn_command() -> list[str]:
    mvn = shutil.which("mvn")
    if mvn is None or shutil.which("java") is None:
        pytest.fail("the Java producer test needs Maven and JDK 17+ on PATH (apt-get install maven "
                    "openjdk-17-jdk-headless)", pytrace=False)
    cmd = [mvn, "-q", "-B", "-Dstyle.color=never"]  # -B alone still writes ANSI resets to stdout
    if not _home_writable():
        cmd.append(f"-Dmaven.repo.local={cache_root() / 'interop' / 'm2'}")
    return cmd


@contextmanager
def go_build_lock() -> Iterator[None]:
    """One Go build at a time per cache: parallel pytest workers would each compile franz-go cold
    (Go does not share an in-progress build); the one that waited finds it in GOCACHE."""
    lock_path = cache_root() / "interop" / "go.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def run_go(args: list[str], cwd: Path = GO_DIR) -> subprocess.CompletedProcess[str]:
    with go_build_lock():
        return run([go_binary(), *args], cwd=cwd, env=go_env())


def run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None,
        timeout: float = BUILD_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    """Run a build step; a failure or timeout fails the test with the command and its output's tail."""
    try:
        proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"timed out after {timeout:.0f}s: {' '.join(cmd)}\n{exc.stdout!r}\n{exc.stderr!r}")
    if proc.returncode != 0:
        pytest.fail(f"exit {proc.returncode}: {' '.join(cmd)}\n--- stdout ---\n{proc.stdout[-4000:]}\n"
                    f"--- stderr ---\n{proc.stderr[-4000:]}")
    return proc
