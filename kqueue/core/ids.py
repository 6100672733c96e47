"""Task ids: random for new tasks, derived and stable for records a foreign producer wrote without one."""

from __future__ import annotations

import os
import uuid

_DERIVED_NAMESPACE = uuid.UUID("6f1c2a8e-4b7d-5e3a-9c0f-6b2d8e1a4c7f")


def new_task_id() -> str:
    """A random (version 4) UUID string, built without uuid.UUID's object overhead (hot on enqueue)."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def derived_task_id(topic: str, partition: int, offset: int) -> str:
    """The same record always gets the same id, so a redelivery is recognisable."""
    return str(uuid.uuid5(_DERIVED_NAMESPACE, f"{topic}/{partition}/{offset}"))
