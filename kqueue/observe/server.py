"""The worker's operations port: /metrics (Prometheus), /livez and /readyz (Kubernetes probes).

A WSGI app on the standard library's threading WSGI server (the same stack prometheus-client's
own server uses), on a daemon thread: a scrape or a probe never touches the poll loop.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any, Protocol
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from kqueue.observe.health import Verdict

log = logging.getLogger("kqueue.metrics")
StartResponse = Callable[[str, list[tuple[str, str]]], Any]


class HealthSource(Protocol):
    def live(self) -> Verdict: ...
    def ready(self) -> Verdict: ...


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # probes every few seconds: no access log
        pass


def operations_app(registry: CollectorRegistry, health: HealthSource) -> Callable[..., Iterable[bytes]]:
    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            encoder, content_type = choose_encoder(environ.get("HTTP_ACCEPT", ""))
            body = encoder(registry)
            start_response("200 OK", [("Content-Type", content_type), ("Content-Length", str(len(body)))])
            return [body]
        if path in ("/livez", "/readyz"):
            ok, reason = health.live() if path == "/livez" else health.ready()
            text = f"{'ok' if ok else 'failing'}: {reason}\n".encode()
            start_response("200 OK" if ok else "503 Service Unavailable",
                           [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(text)))])
            return [text]
        text = b"not found: try /metrics, /livez or /readyz\n"
        start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", str(len(text)))])
        return [text]

    return app


class OperationsServer:
    """Serves `operations_app` on host:port (port 0: any free one, see `.port`)."""

    def __init__(self, registry: CollectorRegistry, health: HealthSource, port: int, host: str = "0.0.0.0") -> None:
        self._server = make_server(host, port, operations_app(registry, health), _ThreadingServer,
                                   handler_class=_QuietHandler)
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, name="kqueue-metrics", daemon=True)

    def start(self) -> OperationsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
