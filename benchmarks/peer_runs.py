"""Other task queues on the same machine, each in its own venv under the cache, run as subprocesses.

Nothing here imports a peer: benchmarks/peers/*.py run with the peer venv's Python and print JSON.
A peer that cannot be installed or run gives a reason instead of a number (never a made-up figure).
Redis (for Celery and Dramatiq) is Debian's `redis-server`, started here on a free loopback port
with persistence off.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PEERS_DIR = Path(__file__).resolve().parent / "peers"
CACHE = Path(os.environ.get("KQUEUE_BENCH_PEERS", Path.home() / ".cache" / "kqueue" / "bench-peers"))
# What each venv gets: the peer with its own defaults' extras, nothing pinned (the run records versions).
REQUIREMENTS = {
    "faststream-aiokafka": ["faststream[kafka]"],
    "faststream-confluent": ["faststream[confluent]"],
    "celery": ["celery[redis]"],
    "dramatiq": ["dramatiq[redis]"],
}


@dataclass
class PeerResult:
    enqueue_seconds: float | None = None
    drain_seconds: float | None = None
    records: int = 0
    version: str = ""
    reason: str = ""  # why there is no number


def venv_python(peer: str) -> Path:
    return CACHE / peer / "bin" / "python"


def installed(peer: str) -> bool:
    return (CACHE / peer / "installed").exists()


def install(peer: str) -> str:
    """Create and fill the peer's venv once; '' when ready, else one line saying why not."""
    if installed(peer):
        return ""
    home = CACHE / peer
    shutil.rmtree(home, ignore_errors=True)
    home.parent.mkdir(parents=True, exist_ok=True)
    steps = [[sys.executable, "-m", "venv", str(home)],
             [str(venv_python(peer)), "-m", "pip", "install", "-q", *REQUIREMENTS[peer]]]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            lines = [line for line in (done.stderr or done.stdout).splitlines() if line.strip()]
            return f"could not install {' '.join(REQUIREMENTS[peer])}: {lines[-1] if lines else done.returncode}"
    (home / "installed").write_text(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    return ""


def run_peer(peer: str, args: list[str], env: dict[str, str] | None = None, timeout: float = 900) -> PeerResult:
    script = PEERS_DIR / f"{peer.split('-')[0]}_peer.py"
    with tempfile.TemporaryDirectory(prefix="kqueue-peer-") as marks:
        done = subprocess.run([str(venv_python(peer)), str(script), *args], capture_output=True, text=True,
                              cwd=PEERS_DIR, timeout=timeout,
                              env={**os.environ, **(env or {}), "PEER_MARKS": marks})
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        return PeerResult(reason=f"{peer} failed: {lines[-1] if lines else done.returncode}")
    data: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return PeerResult(data["enqueue_seconds"], data["drain_seconds"], data["records"], data["version"])


def faststream(backend: str, bootstrap: str, topic: str, records: int) -> PeerResult:
    return run_peer(f"faststream-{backend}", [backend, bootstrap, topic, str(records)])


def redis_peer(peer: str, redis_url: str, records: int) -> PeerResult:
    return run_peer(peer, [str(records)], {"PEER_REDIS_URL": redis_url})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def redis_server() -> Iterator[str | None]:
    """A throwaway redis-server on loopback (no persistence): its URL, or None if it is not installed."""
    binary = shutil.which("redis-server")
    if binary is None:
        yield None
        return
    port = _free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)
