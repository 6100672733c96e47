"""Task ids: random for new tasks, derived and stable for records a foreign producer wrote without one."""

from __future__ import annotations

import uuid

_DERIVED_NAMESPACE = uuid.UUID("6f1c2a8e-4b7d-5e3a-9c0f-6b2d8e1a4c7f")


def new_task_id() -> str:
    return str(uuid.uuid4())


def derived_task_id(topic: str, partition: int, offset: int) -> str:
    """The same record always gets the same id, so a redelivery is recognisable."""
    return str(uuid.uuid5(_DERIVED_NAMESPACE, f"{topic}/{partition}/{offset}"))
