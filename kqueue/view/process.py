"""The status view's ingest as a child process of `kqueue api` (it must not slow the HTTP side)."""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kqueue.view.ingest import Ingest
from kqueue.view.store import StatusStore

log = logging.getLogger("kqueue.view")


def ingest_main(bootstrap: str, db: str, queues: list[str], tiers: list[str], prefix: str, groups: list[str],
                parent: int, log_level: int) -> None:
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ingest = Ingest(bootstrap, StatusStore(db), queues, tiers, prefix, groups)
    signal.signal(signal.SIGTERM, lambda *_: ingest.stop())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent stops us

    def orphaned() -> None:  # the API died without stopping us (SIGKILL): do not read on alone
        while os.getppid() == parent:
            time.sleep(1.0)
        ingest.stop()

    threading.Thread(target=orphaned, daemon=True).start()
    ingest.run()


class IngestProcess:
    def __init__(self, bootstrap: str, db: str | Path, queues: Sequence[str], tiers: Sequence[str],
                 prefix: str = "", groups: Sequence[str] = ()) -> None:
        context: Any = multiprocessing.get_context("spawn")
        self._process = context.Process(
            target=ingest_main, name="kqueue-status-ingest", daemon=True,
            args=(bootstrap, str(db), list(queues), list(tiers), prefix, list(groups), os.getpid(),
                  logging.getLogger().getEffectiveLevel()))

    def start(self) -> IngestProcess:
        self._process.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self._process.is_alive():
            self._process.terminate()
        self._process.join(timeout)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(2.0)
