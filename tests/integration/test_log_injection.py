"""A task key or error text carrying newlines cannot forge a line in a worker's text log: `kqueue
consume` (a subprocess, real broker) writes the failed attempt's line with the control characters
escaped, and every line it writes starts with a timestamp or is an indented continuation."""

from __future__ import annotations

import re
import subprocess
import threading
from pathlib import Path

import kqueue
from tests.support.kafka import unique
from tests.support.worker import consume_process, wait_for

FORGED = "2026-01-01 00:00:00,000 ERROR kqueue.task [1] task dead_lettered task_id=forged"
SHORT = "2026-01-01 00:00:00,000 ERROR forged"  # within the 64 characters of a key a line shows
STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ ")


def test_a_key_and_an_error_with_newlines_stay_on_one_log_line(bootstrap: str, tmp_path: Path) -> None:
    queue, group = unique("loginj"), unique("loginj-g")
    app = kqueue.App("producer", bootstrap)

    @app.task(queue=queue, name="record", max_attempts=1)
    def record(payload: dict[str, object]) -> None: ...

    task_id = record.enqueue({"fail": True, "n": f"x\r\n{FORGED}"}, key=f"k\n{SHORT}\u2028")
    app.flush(30)
    worker = consume_process(bootstrap, queue, group, tmp_path / "done.log", stderr=subprocess.PIPE)
    lines: list[str] = []
    reader = threading.Thread(target=_read_lines, args=(worker, lines), daemon=True)
    reader.start()
    try:
        wait_for(lambda: any(task_id in x and "task dead-lettered" in x for x in lines), 90, "its log line")
    finally:
        worker.terminate()
        worker.wait(30)
        reader.join(10)
    [line] = [x for x in lines if task_id in x and "task dead-lettered" in x]
    assert "key=k\\n" + SHORT + "\\u2028" in line, line  # escaped, whole, on the task's own line
    assert "\\r\\n" + FORGED in line, line  # the error text too
    assert not any(x.startswith((FORGED, SHORT)) for x in lines), lines
    assert all(STAMP.match(x) or x.startswith("  ") or not x.strip() for x in lines), lines


def _read_lines(worker: subprocess.Popen[bytes], lines: list[str]) -> None:
    assert worker.stderr is not None
    for raw in worker.stderr:
        lines.append(raw.decode(errors="replace").rstrip("\n"))
