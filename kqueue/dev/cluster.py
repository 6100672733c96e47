"""Start, inspect and stop the local KRaft cluster (1 or 3 nodes) as background JVM processes."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from kqueue.dev import jars
from kqueue.dev.config import LOG4J2_XML, NodeSpec, plan_nodes, render_properties
from kqueue.dev.paths import KAFKA_VERSION, default_data_dir

STATE_FILE = "cluster.json"
JVM_OPTS = ["-Xms256m", "-Xmx1g", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-Djava.awt.headless=true"]
Progress = Callable[[str], None]


class ClusterError(RuntimeError):
    """The dev cluster cannot do what was asked; the message says why in one line."""


@dataclass
class ClusterState:
    nodes: int
    base_port: int
    cluster_id: str
    version: str
    pids: dict[str, int] = field(default_factory=dict)

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(f"127.0.0.1:{self.base_port + i}" for i in range(self.nodes))


@dataclass(frozen=True)
class NodeStatus:
    node_id: int
    pid: int | None
    alive: bool
    port: int
    answering: bool


def new_cluster_id() -> str:
    """A Kafka-style cluster id: 16 random bytes, base64url without padding, not starting with '-'."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.3)
        return sock.connect_ex((host, port)) == 0


def _pid_is_our_node(pid: int, props: Path) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False
    return "kafka.Kafka" in cmdline and str(props) in cmdline


class DevCluster:
    """One dev cluster, identified by its data directory."""

    def __init__(self, data_dir: Path | None = None, extra_properties: Mapping[str, str] | None = None) -> None:
        self.data_dir = (data_dir or default_data_dir()).resolve()
        self.extra_properties = dict(extra_properties or {})  # see render_properties

    # -- state -----------------------------------------------------------------------------------
    def _state_path(self) -> Path:
        return self.data_dir / STATE_FILE

    def load_state(self) -> ClusterState | None:
        try:
            raw = json.loads(self._state_path().read_text())
        except (OSError, ValueError):
            return None
        return ClusterState(**raw)

    def _save_state(self, state: ClusterState) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._state_path().write_text(json.dumps(asdict(state), indent=2))

    def node_specs(self, state: ClusterState) -> list[NodeSpec]:
        return plan_nodes(state.nodes, state.base_port, self.data_dir)

    def _props_path(self, node: NodeSpec) -> Path:
        return node.data_dir / "server.properties"

    def log_path(self, node_id: int) -> Path:
        return self.data_dir / f"node-{node_id}" / "server.log"

    def _alive_pid(self, state: ClusterState, node: NodeSpec) -> int | None:
        pid = state.pids.get(str(node.node_id))
        if pid is not None and _pid_is_our_node(pid, self._props_path(node)):
            return pid
        return None

    # -- queries ---------------------------------------------------------------------------------
    def status(self) -> list[NodeStatus]:
        state = self.load_state()
        if state is None:
            return []
        result = []
        for node in self.node_specs(state):
            pid = self._alive_pid(state, node)
            result.append(
                NodeStatus(node.node_id, pid, pid is not None, node.broker_port, port_open(node.broker_port))
            )
        return result

    def running(self) -> bool:
        nodes = self.status()
        return bool(nodes) and all(n.alive for n in nodes)

    # -- lifecycle -------------------------------------------------------------------------------
    def up(
        self, nodes: int = 1, base_port: int = 9092, progress: Progress | None = None, timeout: float = 120.0
    ) -> tuple[ClusterState, bool]:
        """Start the cluster (or reuse the running one). Returns (state, reused)."""
        say = progress or (lambda _msg: None)
        state = self.load_state()
        if state is not None and any(s.alive for s in self.status()):
            if (state.nodes, state.base_port) != (nodes, base_port):
                raise ClusterError(
                    f"a {state.nodes}-node dev cluster is already running on port {state.base_port} "
                    f"from {self.data_dir}; run `kqueue dev down` first"
                )
        elif state is not None and (state.nodes, state.base_port, state.version) != (
            nodes, base_port, KAFKA_VERSION
        ):
            self._wipe()
            state = None
        if state is None:
            state = ClusterState(nodes=nodes, base_port=base_port, cluster_id=new_cluster_id(),
                                 version=KAFKA_VERSION)
        reused = self.running()
        if not reused:
            say(f"Apache Kafka {KAFKA_VERSION} jars")
            jars.require_tool("java", "a Java 17+ runtime (e.g. `apt-get install openjdk-17-jre-headless`)")
            jars.ensure_kafka_jars(KAFKA_VERSION, on_progress=say)
            for node in self.node_specs(state):
                if self._alive_pid(state, node) is None:
                    self._start_node(state, node, say)
            self._save_state(state)
        say("waiting for the cluster to answer")
        self._wait_ready(state, timeout)
        return state, reused

    def _start_node(self, state: ClusterState, node: NodeSpec, say: Progress) -> None:
        if port_open(node.broker_port) or port_open(node.controller_port):
            raise ClusterError(
                f"port {node.broker_port} or {node.controller_port} is already in use by another program; "
                "pick other ports with --base-port"
            )
        node.data_dir.mkdir(parents=True, exist_ok=True)
        props = self._props_path(node)
        props.write_text(render_properties(node, self.node_specs(state), self.extra_properties))
        log4j = self.data_dir / "log4j2.xml"
        log4j.write_text(LOG4J2_XML)
        java = ["java", *JVM_OPTS, f"-Dlog4j2.configurationFile={log4j}",
                "-cp", jars.classpath(state.version)]
        if not (node.data_dir / "log" / "meta.properties").exists():
            say(f"formatting node {node.node_id} storage")
            fmt = subprocess.run(
                [*java, "kafka.tools.StorageTool", "format", "-t", state.cluster_id, "-c", str(props),
                 "--ignore-formatted"],
                capture_output=True, text=True, check=False,
            )
            if fmt.returncode != 0:
                raise ClusterError(f"formatting node {node.node_id} failed: {fmt.stderr.strip()[-500:]}")
        say(f"starting node {node.node_id} on 127.0.0.1:{node.broker_port}")
        with open(self.log_path(node.node_id), "ab") as log:
            proc = subprocess.Popen(
                [*java, "kafka.Kafka", str(props)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,  # survives the CLI that started it; `down` stops it
            )
        state.pids[str(node.node_id)] = proc.pid
        self._save_state(state)
        # Until the child has exec'd java, /proc/PID/cmdline still shows this Python process (or is
        # empty): wait for that moment, so every later check can ask "is this pid our node?".
        deadline = time.monotonic() + 10
        while not _pid_is_our_node(proc.pid, props) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)

    def _wait_ready(self, state: ClusterState, timeout: float) -> None:
        from kqueue.transport.admin import probe_cluster  # the Kafka edge lives in transport/

        deadline = time.monotonic() + timeout
        last_error = "no answer"
        while time.monotonic() < deadline:
            for node in self.node_specs(state):
                pid = state.pids.get(str(node.node_id))
                if pid is not None and not process_alive(pid):  # exited, not merely still exec'ing
                    tail = self.tail_log(node.node_id, 15)
                    raise ClusterError(f"node {node.node_id} exited during start-up; its log ends:\n{tail}")
            if not all(port_open(n.broker_port) for n in self.node_specs(state)):
                time.sleep(0.2)
                continue
            try:
                # The dev cluster's own listener is PLAINTEXT: the user's KQUEUE_KAFKA_* security
                # settings (meant for their real cluster) must not reach this probe.
                probe_cluster(state.bootstrap_servers, expected_brokers=state.nodes, timeout=10.0,
                              user_settings=False)
                return
            except Exception as exc:  # still starting: keep waiting until the deadline
                last_error = str(exc)
                time.sleep(0.5)
        raise ClusterError(f"the dev cluster did not answer within {timeout:.0f}s ({last_error})")

    def stop_node(self, node_id: int, hard: bool = False, timeout: float = 30.0) -> None:
        """Stop one node (SIGTERM, or SIGKILL with hard=True); used by failover tests."""
        state = self.load_state()
        if state is None:
            return
        node = self.node_specs(state)[node_id - 1]
        pid = self._alive_pid(state, node)
        if pid is not None:
            _terminate([pid], hard=hard, timeout=timeout)
        state.pids.pop(str(node_id), None)
        self._save_state(state)

    def start_node(self, node_id: int, timeout: float = 90.0) -> None:
        state = self.load_state()
        if state is None:
            raise ClusterError("no dev cluster here")
        node = self.node_specs(state)[node_id - 1]
        if self._alive_pid(state, node) is None:
            self._start_node(state, node, lambda _m: None)
        self._wait_ready(state, timeout)

    def down(self, purge: bool = False, timeout: float = 30.0) -> list[int]:
        """Stop every node this cluster started; returns the pids stopped. purge=True deletes the data."""
        state = self.load_state()
        stopped: list[int] = []
        if state is not None:
            pids = [p for n in self.node_specs(state) if (p := self._alive_pid(state, n)) is not None]
            _terminate(pids, hard=False, timeout=timeout)
            stopped = pids
            state.pids.clear()
            self._save_state(state)
        if purge:
            self._wipe()
        return stopped

    def _wipe(self) -> None:
        import shutil

        shutil.rmtree(self.data_dir, ignore_errors=True)

    def tail_log(self, node_id: int, lines: int = 50) -> str:
        try:
            text = self.log_path(node_id).read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def _terminate(pids: list[int], hard: bool, timeout: float) -> None:
    sig = signal.SIGKILL if hard else signal.SIGTERM
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    remaining = list(pids)
    while remaining and time.monotonic() < deadline:
        remaining = [p for p in remaining if process_alive(p)]
        if remaining:
            time.sleep(0.1)
    for pid in remaining:  # did not stop in time: no orphans left behind
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for pid in remaining:
        while process_alive(pid):
            time.sleep(0.05)


def process_alive(pid: int) -> bool:
    try:
        # Reap it if it is our child, so a zombie does not count as alive.
        waited, _ = os.waitpid(pid, os.WNOHANG)
        if waited == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.split(")")[-1].split()[0] != "Z"
    except OSError:
        return False
