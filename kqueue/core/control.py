"""Commands in `_kqueue.control` (compacted; key = task id or queue): cancel, pause, resume. Pure."""

from __future__ import annotations

from dataclasses import dataclass

from kqueue.core.codec import SchemaStore, decode_payload, encode_avro
from kqueue.core.system_schemas import CONTROL_COMMAND_SCHEMA

_STORE = SchemaStore()
_STORE.add(CONTROL_COMMAND_SCHEMA)


@dataclass(frozen=True)
class ControlCommand:
    command: str  # cancel | pause | resume
    target: str  # a task id (cancel) or a queue (pause, resume)
    at_ms: int

    def encode(self) -> bytes:
        return encode_avro(CONTROL_COMMAND_SCHEMA, {"command": self.command, "target": self.target,
                                                   "at_ms": self.at_ms})

    @classmethod
    def decode(cls, value: bytes) -> ControlCommand:
        record = decode_payload(value, "avro", CONTROL_COMMAND_SCHEMA, _STORE)
        return cls(record["command"], record["target"], record["at_ms"])
