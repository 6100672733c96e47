"""A worker rides through the loss of one broker of three: it keeps polling, re-commits its batch
when a transaction times out, never exits, and nothing is lost."""

from __future__ import annotations

import signal
import time
from collections import Counter
from pathlib import Path

import pytest

import kqueue
from kqueue.dev.cluster import DevCluster
from tests.support.http import free_port, get
from tests.support.kafka import unique
from tests.support.worker import consume_process, recorded, wait_for


def _enqueue(bootstrap: str, queue: str, n: int, start: int = 0, sleep: float = 0.005) -> list[str]:
    app = kqueue.App("producer", bootstrap, partitions=6)

    @app.task(queue=queue, name="record")
    def record(payload: dict[str, object]) -> None: ...

    ids = [record.enqueue({"n": i, "sleep": sleep}, key=f"k{i % 50}") for i in range(start, start + n)]
    app.flush(60)
    return ids


@pytest.mark.cluster3
def test_losing_one_broker_of_three_does_not_stop_the_worker(cluster3: DevCluster, tmp_path: Path) -> None:
    state = cluster3.load_state()
    assert state is not None
    queue, group, log = unique("brokerloss"), unique("g"), tmp_path / "done.log"
    first = _enqueue(state.bootstrap_servers, queue, 400)
    worker = consume_process(state.bootstrap_servers, queue, group, log)
    try:
        wait_for(lambda: len(set(recorded(log))) >= 100, timeout=90, what="progress before the fault")
        cluster3.stop_node(2, hard=True)
        wait_for(lambda: set(first) <= set(recorded(log)), timeout=120, what="the first tasks, one broker down")
        survivors = ",".join(f"127.0.0.1:{state.base_port + i}" for i in (0, 2))
        during = _enqueue(survivors, queue, 200, start=1000)
        wait_for(lambda: set(during) <= set(recorded(log)), timeout=120, what="tasks enqueued during the fault")
        assert worker.poll() is None  # still the same process
        cluster3.start_node(2)
        after = _enqueue(state.bootstrap_servers, queue, 200, start=2000)
        wait_for(lambda: set(after) <= set(recorded(log)), timeout=120, what="tasks after the broker is back")
        assert worker.poll() is None
    finally:
        worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 0
    counts = Counter(recorded(log))
    assert set(counts) >= set(first + during + after)  # nothing lost
    print(f"one broker of three lost: {sum(n - 1 for n in counts.values())} duplicate runs of {len(counts)}")


def test_a_worker_waits_out_an_outage_of_its_only_broker(tmp_path: Path) -> None:
    """A single broker gone for 20 s: the worker says Kafka is unreachable once, keeps its process,
    and carries on by itself when the broker is back; nothing is lost."""
    from tests.support.brokers import jars_cluster

    with jars_cluster(nodes=1, start_port=13092) as cluster:
        state = cluster.load_state()
        assert state is not None
        queue, group, log = unique("outage"), unique("g"), tmp_path / "done.log"
        first = _enqueue(state.bootstrap_servers, queue, 1000, sleep=0.04)  # ~5 s of work: the outage hits it
        err_path = tmp_path / "worker.err"
        port = free_port()
        with err_path.open("w") as err_file:  # a file, not a pipe: an unread pipe would block the worker
            worker = consume_process(state.bootstrap_servers, queue, group, log, "--metrics-port", str(port),
                                     "--metrics-host", "127.0.0.1", stderr=err_file.fileno())
        try:
            wait_for(lambda: len(set(recorded(log))) >= 100, timeout=90, what="progress before the outage")
            wait_for(lambda: get(port, "/readyz")[0] == 200, timeout=30, what="ready before the outage")
            cluster.stop_node(0, hard=True)
            # The probes through the outage: alive all along (the loop turns), not ready while Kafka is away.
            probes = []
            for _ in range(40):
                probes.append((get(port, "/livez")[0], get(port, "/readyz")))
                time.sleep(0.5)
            assert all(live == 200 for live, _ in probes), probes
            unready = [body for _, (status, body) in probes if status == 503]
            assert unready, probes[-5:]
            assert all("Kafka has not answered" in body or "commits failing" in body for body in unready), unready
            assert worker.poll() is None, f"the worker exited during the outage: {err_path.read_text()[-3000:]}"
            cluster.start_node(0)
            wait_for(lambda: set(first) <= set(recorded(log)), timeout=120, what="the first tasks after the outage")
            after = _enqueue(state.bootstrap_servers, queue, 100, start=1000)
            wait_for(lambda: set(after) <= set(recorded(log)), timeout=120, what="tasks enqueued after the outage")
            wait_for(lambda: get(port, "/readyz")[0] == 200, timeout=30,
                     what=f"ready again after the outage (now: {get(port, '/readyz')})")
            assert worker.poll() is None  # the same process all along
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=90)
        stderr = err_path.read_text()
        assert worker.returncode == 0, stderr[-3000:]
        counts = Counter(recorded(log))
        assert set(counts) >= set(first + after)  # nothing lost
        # One line when it starts, one when it is over; the client's reconnect lines are damped
        # (hundreds of them undamped).
        assert stderr.count("Kafka may be unreachable") == 1, stderr[-3000:]
        assert stderr.count("committing again after") == 1, stderr[-3000:]
        assert len(stderr.splitlines()) < 40, stderr[-3000:]
        print(f"20 s outage: {sum(n - 1 for n in counts.values())} duplicate runs of {len(counts)}; "
              f"{len(stderr.splitlines())} stderr lines:\n{stderr[-3000:]}")
