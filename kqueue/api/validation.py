"""Check a payload against its task type before it is produced: a 422 that names the field at fault."""

from __future__ import annotations

from typing import Any

from fastavro.validation import ValidationError, validate

from kqueue.core.codec import AvroSchema
from kqueue.sdk.task import TaskDef


def payload_problems(task: TaskDef, payload: Any) -> list[dict[str, Any]]:
    """FastAPI-shaped validation errors (`loc`, `msg`, `type`); empty when the payload encodes."""
    try:
        task.encode(payload)
        return []
    except ValueError as exc:
        message = str(exc)
    paths = _failing_fields(task.schema, payload) if task.schema is not None else []
    return [{"loc": ["body", "payload", *path], "msg": message, "type": "payload"} for path in paths or [[]]]


def _failing_fields(schema: AvroSchema, payload: Any) -> list[list[str]]:
    try:
        validate(payload, schema.parsed, raise_errors=True)
    except ValidationError as exc:
        out = []
        for error in exc.errors:
            name = getattr(error, "field", None) or ""
            # fastavro names a field by its record's full name and the field (`dev.x.SendEmail.to`).
            parts = [p for p in str(name).split(".") if p]
            out.append(parts[-1:])
        return out
    except Exception:  # the schema checker itself could not say: the message still explains
        return []
    return []
