"""Every Kafka topic and header name kqueue uses, in one place (DESIGN.md section 2)."""

from __future__ import annotations

from typing import Final

# -- headers (UTF-8 string values) ------------------------------------------------------------------
H_ID: Final = "kq-id"
H_TYPE: Final = "kq-type"
H_ATTEMPT: Final = "kq-attempt"
H_MAX_ATTEMPTS: Final = "kq-max-attempts"
H_ENQUEUED_AT: Final = "kq-enqueued-at"
H_NOT_BEFORE: Final = "kq-not-before"
H_PRIORITY: Final = "kq-priority"
H_IDEMPOTENCY_KEY: Final = "kq-idempotency-key"
H_TARGET: Final = "kq-target"
H_ORIGIN: Final = "kq-origin"
H_ERROR_TYPE: Final = "kq-error-type"
H_ERROR_MESSAGE: Final = "kq-error-message"
H_ERROR_TRACE: Final = "kq-error-trace"
H_FAILED_AT: Final = "kq-failed-at"
H_CONTENT_TYPE: Final = "kq-content-type"
H_TRACEPARENT: Final = "traceparent"
H_TRACESTATE: Final = "tracestate"
H_PAYLOAD_AT: Final = "kq-payload-at"  # on a dead letter by reference: topic/partition/offset of the payload
H_UNIQUE_KEY: Final = "kq-unique-key"  # a unique task's key (core/dedup.py)
H_UNIQUE_FOR: Final = "kq-unique-for"  # seconds its claim holds at most
H_REPLAY_OF: Final = "kq-replay-of"  # set on a task put back on Q by `kqueue dlq replay`: the dead letter's position
H_REPLAYED_AT: Final = "kq-replayed-at"  # set with kq-replay-of: when (epoch ms); begins a new life for cancels

CONTENT_AVRO: Final = "avro"
CONTENT_JSON: Final = "json"

PRIORITIES: Final = ("high", "normal", "low")

# -- topics -------------------------------------------------------------------------------------
STATUS_TOPIC: Final = "_kqueue.status"
CONTROL_TOPIC: Final = "_kqueue.control"
WORKERS_TOPIC: Final = "_kqueue.workers"  # worker reports (what runs where), about one a second per worker
CRON_TOPIC: Final = "_kqueue.cron"  # one partition: cron leadership, progress and scheduler beats (kqueue/cron/)
DEFAULT_DELAY_TIERS: Final = ("1s", "5s", "30s", "2m", "10m", "1h", "6h")


def _prefixed(prefix: str, name: str) -> str:
    return f"{prefix}{name}" if prefix else name


def main_topic(queue: str, prefix: str = "") -> str:
    return _prefixed(prefix, queue)


def lane_topic(queue: str, priority: str, prefix: str = "") -> str:
    """The topic of a priority lane: `Q.high`, `Q`, `Q.low`."""
    if priority not in PRIORITIES:
        raise ValueError(f"unknown priority {priority!r}: use one of {', '.join(PRIORITIES)}")
    base = main_topic(queue, prefix)
    return base if priority == "normal" else f"{base}.{priority}"


def delay_topic(queue: str, tier: str, prefix: str = "") -> str:
    return f"{main_topic(queue, prefix)}.delay.{tier}"


def dlq_topic(queue: str, prefix: str = "") -> str:
    return f"{main_topic(queue, prefix)}.dlq"


def dedup_topic(queue: str, prefix: str = "") -> str:
    """Claims of idempotency and unique keys (compacted; same partition number as the task)."""
    return f"{main_topic(queue, prefix)}.dedup"


def is_dedup_topic(topic: str) -> bool:
    return topic.endswith(".dedup")


def status_topic(prefix: str = "") -> str:
    return _prefixed(prefix, STATUS_TOPIC)


def control_topic(prefix: str = "") -> str:
    return _prefixed(prefix, CONTROL_TOPIC)


def workers_topic(prefix: str = "") -> str:
    return _prefixed(prefix, WORKERS_TOPIC)


def cron_topic(prefix: str = "") -> str:
    return _prefixed(prefix, CRON_TOPIC)


def tier_of_topic(topic: str) -> str | None:
    """The delay tier of a `Q.delay.<tier>` topic, else None."""
    if ".delay." not in topic:
        return None
    return topic.rsplit(".delay.", 1)[1]


def queue_of_topic(topic: str, prefix: str = "") -> str:
    """The queue a kqueue topic belongs to (`email.delay.5s` -> `email`)."""
    name = topic[len(prefix):] if prefix and topic.startswith(prefix) else topic
    if ".delay." in name:
        return name.split(".delay.", 1)[0]
    for suffix in (".dlq", ".high", ".low"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name
