"""`kqueue api`: the REST API and the status view behind it."""

from __future__ import annotations

import hashlib
import os
import socket
from dataclasses import dataclass
from pathlib import Path

import typer

from kqueue.api.guard import accepted_hosts, host_pattern_problem, is_loopback, refusal
from kqueue.api.listen import listen
from kqueue.cli.common import console, err_console, fail, load_cli_app, options, setup_logging
from kqueue.core.errors import DeliveryError
from kqueue.view.liveness import WorkerLiveness

TOKEN_ENV = "KQUEUE_API_TOKEN"
# Connections or requests at once: a dashboard or a service needs a few; half-open ones past this
# are answered 503 until the header timeout closes them (put a proxy in front for the internet).
DEFAULT_CONCURRENCY = 512
DEFAULT_HEADER_TIMEOUT = 10.0  # seconds for a request's line and headers (api/slowclients.py)


def default_db(app_name: str, bootstrap: str, prefix: str) -> Path:
    """One view per app, cluster and prefix (its read positions only make sense for that cluster)."""
    tag = hashlib.sha1(f"{bootstrap}|{prefix}".encode()).hexdigest()[:10]
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in app_name) or "app"
    return Path.home() / ".cache" / "kqueue" / "status" / f"{safe}-{tag}.db"


def api(
    ctx: typer.Context,
    app_spec: str = typer.Option(..., "--app", "-a", help="Where the App is: package.module:app"),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0 in a container)"),
    port: int = typer.Option(8080, "--port", min=0, max=65535, help="Port to listen on (0: any free port)"),
    db: Path | None = typer.Option(None, "--db", help="The status view's sqlite file [default: under ~/.cache/kqueue]"),
    group: list[str] = typer.Option([], "--group", "-g",
                                    help="Consumer group(s) whose commits mean done [default: those with commits "
                                         "on the queue's lanes and members now]"),
    report_interval: float = typer.Option(
        1.0, "--worker-report-interval", min=0.001, max=3600,
        help="Seconds between a worker's reports (kqueue consume: 1); one silent for 5 of them is shown gone"),
    drop_after: float = typer.Option(600.0, "--drop-workers-after", min=0, max=30 * 24 * 3600,
                                     help="Seconds a gone worker stays in the workers list"),
    allowed_hosts: list[str] = typer.Option(
        [], "--allowed-host",
        help="A Host name requests may be sent to, besides localhost (repeat; '*.example.com' for a domain, "
             "'*' for any) [default: loopback names when listening on loopback, else any]"),
    allow_no_token: bool = typer.Option(False, "--allow-no-token",
                                        help="Serve beyond loopback without KQUEUE_API_TOKEN (anyone who reaches "
                                             "the port may enqueue, cancel and replay)"),
    docs: bool = typer.Option(False, "--docs", help="Serve API docs at /docs (needs: pip install 'kqueue[docs]')"),
    header_timeout: float = typer.Option(DEFAULT_HEADER_TIMEOUT, "--header-timeout", min=0.1, max=3600,
                                         help="Seconds a request's line and headers may take to arrive"),
    limit_concurrency: int = typer.Option(DEFAULT_CONCURRENCY, "--limit-concurrency", min=1, max=100_000,
                                          help="Open connections (or requests in progress) past which new "
                                               "requests are answered 503"),
    log_level: str = typer.Option("WARNING", "--log-level", envvar="KQUEUE_LOG_LEVEL"),
) -> None:
    """Serve the REST API (tasks, queues, dead letters) with its status view. KQUEUE_API_TOKEN, when
    set, is the bearer token every /api route asks for."""
    setup_logging(log_level)
    token = os.environ.get(TOKEN_ENV) or None
    for pattern in allowed_hosts:
        if (problem := host_pattern_problem(pattern)) is not None:
            raise fail(problem, 2)
    if docs:
        from kqueue.api.docs import DocsUnavailable, swagger_ui_files

        try:
            swagger_ui_files()
        except DocsUnavailable as exc:
            raise fail(str(exc), 2) from None
    opts = options(ctx)
    app = load_cli_app(app_spec, opts)
    if not app.queues():
        raise fail(f"{app_spec} has no tasks: there is nothing to serve", 2)
    try:
        listener = listen(host, port)
    except OSError as exc:
        raise fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}", 2) from None
    bound = str(listener.getsockname()[0])
    if (why := refusal(bound, token, allow_no_token)) is not None:
        listener.close()
        raise fail(why, 2)
    if not token and not is_loopback(bound):
        err_console.print(f"[yellow]warning:[/yellow] serving on {bound} with no token (--allow-no-token): anyone "
                          "who reaches the port may enqueue, cancel and replay", highlight=False)
    try:
        for queue in app.queues():  # the view reads the queues' topics: they must exist
            app.ensure_queue(queue)
    except DeliveryError as exc:
        raise fail(str(exc)) from None
    liveness = WorkerLiveness(round(report_interval * 1000), round(drop_after * 1000))
    limits = Limits(accepted_hosts(bound, allowed_hosts), docs, header_timeout, limit_concurrency)
    serve(app, listener, db or default_db(app.name, app.bootstrap_servers, app.topic_prefix), group, token,
          liveness, limits)


@dataclass(frozen=True)
class Limits:
    hosts: list[str] | None = None  # None: any
    docs: bool = False
    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    concurrency: int = DEFAULT_CONCURRENCY


def serve(app: object, listener: socket.socket, db: Path, groups: list[str], token: str | None,
          liveness: WorkerLiveness = WorkerLiveness(), limits: Limits = Limits()) -> None:
    import uvicorn

    from kqueue.api.queues import QueueService
    from kqueue.api.server import create_api
    from kqueue.api.service import TaskService
    from kqueue.api.slowclients import with_header_timeout
    from kqueue.sdk.app import App
    from kqueue.view.process import IngestProcess
    from kqueue.view.store import StatusStore

    assert isinstance(app, App)
    db.parent.mkdir(parents=True, exist_ok=True)
    store = StatusStore(db)
    ingest = IngestProcess(app.bootstrap_servers, db, app.queues(), app.tiers.names, app.topic_prefix,
                           groups).start()
    api = create_api(TaskService(app, store, liveness=liveness),
                     QueueService(app, store, groups[0] if groups else None, liveness), token, reader=ingest.health,
                     hosts=limits.hosts, docs=limits.docs)
    bound_host, bound_port = listener.getsockname()[:2]
    console.print(f"kqueue api on http://{bound_host}:{bound_port} (OpenAPI at /openapi.json; status view "
                  f"{db}{'; bearer token required' if token else ''})", highlight=False)
    server = uvicorn.Server(uvicorn.Config(api, log_level="warning", access_log=False,
                                           http=with_header_timeout(limits.header_timeout),
                                           limit_concurrency=limits.concurrency))
    try:
        server.run(sockets=[listener])
    finally:
        ingest.stop()
        store.close()
