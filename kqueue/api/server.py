"""The REST API (`kqueue api`): FastAPI routes over the task and queue services.

Every route under /api requires `Authorization: Bearer <token>` when a token is configured
(`KQUEUE_API_TOKEN`). Bad input is a 4xx with a one-line `detail`; Kafka out of reach is a 503.
`/livez` and `/readyz` (no token: probes carry none): alive while it answers; ready while the status
view's reader reads (503 while it is not).
"""

from __future__ import annotations

import dataclasses
import hmac
from collections.abc import Callable, Sequence
from pathlib import Path as PathType
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles

from kqueue.api.bodylimit import BodyLimit
from kqueue.api.browser import BrowserHeaders
from kqueue.api.catchup import ViewBehind
from kqueue.api.cron_view import CronView
from kqueue.api.docs import add_docs
from kqueue.api.guard import UNAUTHORIZED, HostCheck, TokenFirst
from kqueue.api.models import (
    CancelAnswerBody,
    Enqueued,
    EnqueueRequest,
    LimitRequest,
    PauseRequest,
    Problem,
    QueueLimitAnswer,
    QueuePauseAnswer,
    ReplayAnswer,
    ReplayRequest,
    TaskAnswer,
)
from kqueue.api.queues import QueueService, UnknownQueue
from kqueue.api.service import NotFound, TaskService
from kqueue.api.strictjson import StrictJsonRoute, strict_post
from kqueue.api.validation import payload_problems
from kqueue.control.dlq import ReplayConflict
from kqueue.core.errors import DeliveryError, RecordTooLarge
from kqueue.core.json_rules import stored_json
from kqueue.core.status import TaskStatus
from kqueue.transport.admin import KafkaUnavailable
from kqueue.transport.security import scrub
from kqueue.transport.topic_reader import TopicReadError
from kqueue.view.process import ReaderHealth

STATIC = PathType(__file__).resolve().parent / "static"
MAX_BODY = 1024 * 1024  # bytes; a task's payload belongs in Kafka, not a bulk upload
TaskId = Annotated[str, Path(min_length=1, max_length=512)]
QueueName = Annotated[str, Path(min_length=1, max_length=249)]
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem}, 404: {"model": Problem}, 503: {"model": Problem},
}


_BEARER = HTTPBearer(auto_error=False)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)]


class TokenCheck:
    """The dependency every /api route has: the bearer token, compared in constant time. TokenFirst
    (guard.py) has already refused a request without it; this declares it in the OpenAPI document."""

    def __init__(self, token: str | None) -> None:
        self.token = token

    def __call__(self, credentials: Credentials) -> None:
        if self.token is None:
            return
        given = credentials.credentials if credentials is not None else ""
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            raise HTTPException(401, UNAUTHORIZED, headers={"WWW-Authenticate": "Bearer"})


def _answer(status: TaskStatus) -> TaskAnswer:
    """The task as the API shows it; a kept result that cannot be shown as JSON (too deep, NaN, not
    JSON: written by an older version or a foreign producer) is replaced by {"unrenderable": why}."""
    body = dataclasses.replace(status, result=None).as_json()
    if status.result is not None:
        body["result"] = stored_json(status.result)
    return TaskAnswer.model_validate(body)


def create_api(tasks: TaskService, queues: QueueService, token: str | None = None,
               max_body: int = MAX_BODY, reader: Callable[[], ReaderHealth] | None = None,
               hosts: Sequence[str] | None = None, docs: bool = False) -> FastAPI:
    """The app; `hosts`: the Host names served (None: any), `docs`: serve /docs (Swagger UI)."""
    api = FastAPI(title="kqueue", version="1", description="Tasks, queues and dead letters of a kqueue app.",
                  docs_url=None, redoc_url=None, swagger_ui_oauth2_redirect_url=None)
    # Outermost last: browser headers on every answer, then the Host, then the token, all before
    # the body is read; the size limit while it is.
    api.add_middleware(BodyLimit, limit=max_body)
    api.add_middleware(TokenFirst, token=token)
    api.add_middleware(HostCheck, hosts=hosts)
    api.add_middleware(BrowserHeaders)
    if docs:
        add_docs(api, STATIC)
    # Every JSON body under the same rules (depth, no NaN): parsed by StrictJsonRoute.
    crons = CronView(tasks.app)
    v1 = APIRouter(prefix="/api/v1", dependencies=[Depends(TokenCheck(token))], responses=_ERRORS,
                   route_class=StrictJsonRoute)

    @strict_post(v1, "/tasks", status_code=202, response_model=Enqueued, responses={422: {}, 413: {"model": Problem}})
    async def enqueue(body: EnqueueRequest) -> Any:
        try:
            task = tasks.task_def(body.type, body.queue)
        except NotFound as exc:
            raise HTTPException(404, str(exc)) from None
        problems = payload_problems(task, body.payload)
        if problems:
            return JSONResponse({"detail": problems}, status_code=422)
        if body.delay is not None and body.run_at is not None:
            return JSONResponse({"detail": [{"loc": ["body", "delay"], "msg": "give delay or run_at, not both",
                                             "type": "value_error"}]}, status_code=422)
        task_id, at = await tasks.enqueue(task, body.payload, key=body.key, priority=body.priority,
                                          delay=body.delay, run_at=body.run_at,
                                          idempotency_key=body.idempotency_key)
        return Enqueued(task_id=task_id, created_at=at)

    @v1.get("/tasks/{task_id:path}/timeline")
    async def task_timeline(task_id: TaskId) -> list[dict[str, Any]]:
        """What the view read about the task, in order: appended, retried through tiers, run, finished.

        Ids may hold `/` (a foreign producer's kq-id): this route comes first, so `GET /tasks/x/timeline`
        is the timeline of `x` even when a task `x/timeline` exists (whose status GET cannot reach; its
        cancel and dead letter can)."""
        try:
            await tasks.status(task_id)
        except NotFound as exc:
            raise HTTPException(404, str(exc)) from None
        return tasks.store.timeline(task_id)

    @v1.get("/tasks/{task_id:path}", response_model=TaskAnswer)
    async def get_task(task_id: TaskId) -> TaskAnswer:
        try:
            return _answer(await tasks.status(task_id))
        except NotFound as exc:
            raise HTTPException(404, str(exc)) from None

    @v1.get("/tasks", response_model=list[TaskAnswer])
    def recent_tasks(queue: Annotated[str | None, Query(max_length=249)] = None,
                     limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> list[TaskAnswer]:
        return [_answer(status) for status in tasks.recent(limit, queue)]

    @v1.delete("/tasks/{task_id:path}", status_code=202, response_model=CancelAnswerBody,
               responses={200: {"model": CancelAnswerBody}, 409: {"model": TaskAnswer}})
    async def cancel_task(task_id: TaskId) -> Any:
        try:
            answer = await tasks.cancel(task_id)
        except NotFound as exc:
            raise HTTPException(404, str(exc)) from None
        if answer.code == 409:
            return JSONResponse(_answer(answer.status).model_dump(), status_code=409)
        pending = answer.status.status in ("queued", "scheduled", "retrying")
        body = CancelAnswerBody(task_id=task_id, status="cancelled" if answer.code == 200 or pending
                                else answer.status.status, cancel_requested=answer.code == 202)
        return JSONResponse(body.model_dump(), status_code=answer.code)

    @v1.get("/queues")
    def list_queues() -> list[dict[str, Any]]:
        return [queues.summary(q) for q in tasks.app.queues()]

    @v1.get("/queues/{queue}")
    def queue_detail(queue: QueueName) -> dict[str, Any]:
        return queues.detail(queue)

    @v1.get("/queues/{queue}/series")
    def queue_series(queue: QueueName, minutes: Annotated[int, Query(ge=1, le=60)] = 5) -> list[dict[str, Any]]:
        """Per 10 s over the last minutes: tasks completed, failed, cancelled; latency p50/p99 (ms)."""
        return queues.series(queue, minutes)

    @v1.get("/queues/{queue}/dlq", response_model=list[dict[str, Any]], responses={200: {"headers": {"X-Total-Count": {
        "description": "How many dead letters the filter matches in all", "schema": {"type": "integer"}}}}})
    def dead_letters(queue: QueueName, limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                     offset: Annotated[int, Query(ge=0, le=2**62)] = 0,
                     task_type: Annotated[str, Query(alias="type", max_length=1000)] = "",
                     error: Annotated[str, Query(max_length=1000)] = "") -> Any:
        """A page of dead letters, newest first: `offset` skips, `type` is matched exactly, `error` as a
        substring (ASCII letters in any case); empty means any. The total matching is in X-Total-Count."""
        page, total = queues.dead_letters(queue, limit, offset, task_type or None, error or None)
        return JSONResponse(page, headers={"X-Total-Count": str(total)})

    @v1.get("/queues/{queue}/dlq/{task_id:path}")
    def dead_letter(queue: QueueName, task_id: TaskId) -> dict[str, Any]:
        try:
            return queues.dead_letter(queue, task_id)
        except UnknownQueue:
            raise
        except LookupError as exc:
            raise HTTPException(404, str(exc)) from None

    @v1.post("/queues/{queue}/dlq/replay", response_model=ReplayAnswer,
             responses={409: {"model": Problem, "description": "Another replay of the queue ran at the same "
                              "time and this one wrote nothing; try again after Retry-After seconds"}})
    def replay(queue: QueueName, body: ReplayRequest) -> Any:
        if not body.task_ids and not body.all:
            return JSONResponse({"detail": [{"loc": ["body", "task_ids"], "msg": "name task_ids or set all",
                                             "type": "value_error"}]}, status_code=422)
        return queues.replay(queue, body.task_ids, body.all, body.ordered)

    @v1.get("/cron")
    def cron() -> dict[str, Any]:
        """The app's cron schedules (next fire, last fired tick, epoch ms) and the schedulers alive,
        the leader first."""
        try:
            return crons.listing()
        except TopicReadError as exc:
            raise ViewBehind(f"cannot read the cron topic now: {exc}") from None

    @v1.post("/queues/{queue}/pause", response_model=QueuePauseAnswer)
    def pause_queue(queue: QueueName, body: PauseRequest | None = None) -> Any:
        """Workers of the queue stop starting its tasks (running ones finish) until it is resumed, also
        across restarts; enqueueing still works. The body (optional): {"reason": "..."}."""
        return queues.pause(queue, body.reason if body is not None else None)

    @v1.post("/queues/{queue}/resume", response_model=QueuePauseAnswer)
    def resume_queue(queue: QueueName) -> Any:
        """Workers of the queue start its tasks again."""
        return queues.resume(queue)

    @v1.post("/queues/{queue}/limit", response_model=QueueLimitAnswer)
    def limit_queue(queue: QueueName, body: LimitRequest) -> Any:
        """Limit how fast the queue's workers together start its tasks, all task types counted together
        (a type's own rate_limit still holds too), across restarts: {"rate": "500/s"}; {"rate": null}
        clears it. Workers follow within about two seconds."""
        return queues.limit(queue, body.rate)

    @v1.get("/workers")
    def workers() -> list[dict[str, Any]]:
        """Each worker's last report, with its `state`: up, stopping, gone or stopped (silent for a few
        report intervals: nothing shown running), until it has been silent for the drop time."""
        return tasks.workers()

    api.include_router(v1)
    api.mount("/static", StaticFiles(directory=STATIC), name="static")

    @api.get("/", include_in_schema=False)
    def dashboard() -> FileResponse:
        """The dashboard's page; its data comes from /api (with the token when one is set)."""
        return FileResponse(STATIC / "dashboard.html")

    @api.get("/livez", include_in_schema=False)
    def livez() -> JSONResponse:
        """Alive while the server answers (a dead status reader is restarted; /readyz tells of it)."""
        return JSONResponse({"alive": True}, headers={"Cache-Control": "no-store"})

    @api.get("/readyz", include_in_schema=False)
    def readyz() -> JSONResponse:
        """Ready while the status view's reader reads; else 503 with what it is doing (restarting)."""
        health = reader() if reader is not None else ReaderHealth("reading", 0, "no reader is watched here")
        return JSONResponse({"ready": health.ready, "status_view": health.as_json()},
                            status_code=200 if health.ready else 503, headers={"Cache-Control": "no-store"})

    @api.exception_handler(RequestValidationError)
    def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        # Where and why only: echoing the input back could carry text JSON allows and UTF-8 does not.
        detail = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
                  for e in exc.errors()]
        return JSONResponse({"detail": detail}, status_code=422)

    @api.exception_handler(UnknownQueue)
    def unknown_queue(_: Request, exc: UnknownQueue) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @api.exception_handler(ViewBehind)
    def view_behind(_: Request, exc: ViewBehind) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": "1"})

    @api.exception_handler(DeliveryError)
    def kafka_away(_: Request, exc: DeliveryError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": "5"})

    @api.exception_handler(KafkaUnavailable)
    def kafka_unanswered(_: Request, exc: KafkaUnavailable) -> JSONResponse:
        # A figure read from Kafka (a queue's depths) that it could not give now: a new topic whose
        # leader is not elected yet, a broker away. Asking again may work.
        error = exc.args[0] if exc.args else exc
        reason = error.str() if hasattr(error, "str") else str(error)
        return JSONResponse({"detail": scrub(f"Kafka could not answer now: {reason}")}, status_code=503,
                            headers={"Retry-After": "1"})

    @api.exception_handler(RecordTooLarge)
    def too_large(_: Request, exc: RecordTooLarge) -> JSONResponse:
        # Kafka refuses it every time: not a 503 to retry.
        return JSONResponse({"detail": str(exc)}, status_code=413)

    @api.exception_handler(ReplayConflict)
    def replay_raced(_: Request, exc: ReplayConflict) -> JSONResponse:
        # The fence kept the replay at most once; the loser wrote nothing and may simply ask again.
        return JSONResponse({"detail": str(exc)}, status_code=409, headers={"Retry-After": "1"})

    return api
