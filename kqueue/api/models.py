"""Request and response bodies of the REST API (the OpenAPI document is generated from these)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
)

MAX_NAME = 249  # Kafka's longest topic name: a queue or type name cannot usefully be longer
MAX_KEY = 4096


def _encodable(value: str | None) -> str | None:
    """JSON allows lone surrogates, UTF-8 (and so Kafka) does not: refuse them as bad input."""
    if value is not None:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("must be valid Unicode text (no lone surrogates)") from None
    return value


class EnqueueRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str = Field(min_length=1, max_length=MAX_NAME, description="The task type (its handler's name)")
    queue: str | None = Field(None, min_length=1, max_length=MAX_NAME,
                              description="Needed only when the type exists on several queues")
    payload: Any = Field(None, description="Checked against the type's Avro schema when it has one")
    priority: Literal["high", "normal", "low"] | Annotated[StrictInt, Field(ge=0, le=9)] = Field(
        "normal", description="A lane, or 0-9 (9 most urgent): 7-9 high, 3-6 normal, 0-2 low")
    key: str | None = Field(None, max_length=MAX_KEY, description="Tasks with one key run in order")
    delay: float | None = Field(None, ge=0, le=366 * 24 * 3600, description="Seconds to wait before it may run")
    run_at: AwareDatetime | None = Field(None, description="When it may run (with a time zone)")
    idempotency_key: str | None = Field(None, min_length=1, max_length=MAX_KEY)

    @field_validator("priority", mode="wrap")
    @classmethod
    def _one_priority_error(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        """One error naming what is allowed, not one per member of the union."""
        try:
            return handler(value)
        except ValidationError:
            raise ValueError("must be high, normal, low or an integer 0-9 (9 most urgent)") from None

    @field_validator("type", "queue", "key", "idempotency_key")
    @classmethod
    def _utf8(cls, value: str | None) -> str | None:
        return _encodable(value)


class Enqueued(BaseModel):
    task_id: str
    status: Literal["queued"] = "queued"
    created_at: int = Field(description="Epoch milliseconds")


class Timestamps(BaseModel):
    enqueued_at: int | None = None
    started_at: int | None = None
    finished_at: int | None = None
    next_attempt_at: int | None = None


class TaskAnswer(BaseModel):
    task_id: str
    status: Literal["queued", "scheduled", "processing", "retrying", "completed", "failed", "cancelled", "parked"]
    queue: str | None = None
    type: str | None = None
    attempts: int
    max_attempts: int | None = None
    tier: str | None = Field(None, description="The delay tier a scheduled or retrying task waits in")
    worker: str | None = None
    error: str | None = None
    cancel_requested: bool = False
    timestamps: Timestamps
    result: Any = None


class CancelAnswerBody(BaseModel):
    task_id: str
    status: str = Field(description="`cancelled` when it will not run (or did not); else its status now")
    cancel_requested: bool


class ReplayRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task_ids: list[str] = Field(default_factory=list, max_length=10_000)
    # Strict: "yes", "false" or 1 is a 422, never a replay of the whole DLQ.
    all: StrictBool = Field(False, description="true: replay every pending dead letter of the queue")
    ordered: StrictBool = Field(False, description="true: in the order the tasks were first enqueued, so a key's "
                                "tasks go back in their original order")


class ReplayAnswer(BaseModel):
    replayed: list[str]
    skipped: list[str]
    missing: list[str]


class PauseRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(None, max_length=1000, description="Why; shown with the queue's state")

    @field_validator("reason")
    @classmethod
    def _utf8(cls, value: str | None) -> str | None:
        return _encodable(value)


class QueuePauseAnswer(BaseModel):
    queue: str
    paused: bool
    since: int | None = Field(description="Epoch milliseconds the queue has been paused since (null: running)")
    reason: str | None


class LimitRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rate: str | None = Field(description="N/s, N/m or N/h for all the queue's task types together "
                             "(e.g. \"500/s\"); null clears the queue-wide limit", max_length=100)

    @field_validator("rate")
    @classmethod
    def _a_rate(cls, value: str | None) -> str | None:
        from kqueue.control.limits import parse_queue_rate

        parsed = parse_queue_rate(value)  # ValueError (a 422) in one line naming the value
        return str(parsed) if parsed is not None else None


class QueueLimitAnswer(BaseModel):
    queue: str
    rate: str | None = Field(description="The queue-wide limit (null: none)")
    per_second: float | None
    since: int | None = Field(description="Epoch milliseconds the limit has been set since (null: none)")


class Problem(BaseModel):
    detail: str
