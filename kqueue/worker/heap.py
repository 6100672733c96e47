"""The garbage collector set for a worker process, which owns its process (`kqueue consume`).

Tasks are freed by reference counting; the cyclic collector only ever finds the few cycles
exceptions make. With the default thresholds it still runs a young collection every 700 net
allocations, which a batch in flight (items, payloads, header dicts) passes many times over, and
every few seconds a full one over everything the process imported. Measured on 200,000 no-op
tasks (the throughput benchmark's worker): 3,266 young, 296 middle and 27 full collections, about
0.5 s, a fifth of the worker's time; with these settings 2 young and 1 full (docs/design.md).
"""

from __future__ import annotations

import gc

# Net allocations of container objects between young collections (CPython's default is 700).
YOUNG_THRESHOLD = 20_000
OLDER_THRESHOLDS = (20, 10)


def settle_worker_heap() -> None:
    """Collect what start-up left, move what survives out of the collector's scans (it lives as
    long as the process: modules, the app, its schemas) and collect young objects less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, *OLDER_THRESHOLDS)
