"""Tracing for every App when OpenTelemetry is configured, registered by `import kqueue`.

The SDK offers a seam for middleware that every new App adds (`sdk.app.register_default_middleware`);
this is the one kqueue registers. OpenTelemetry is imported only when it is configured (the
OTEL_TRACES_EXPORTER variable, or an SDK tracer provider set up in code), so it costs nothing otherwise.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from kqueue.sdk.middleware import Middleware


def tracing_when_configured(existing: Sequence[Middleware]) -> Middleware | None:
    if not (os.environ.get("OTEL_TRACES_EXPORTER") or "opentelemetry.sdk.trace" in sys.modules):
        return None
    from kqueue.observe.tracing import tracing_middleware

    return tracing_middleware(existing)
