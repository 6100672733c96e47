"""Exceptions users raise from handlers, and the errors kqueue reports."""

from __future__ import annotations

from datetime import timedelta


class KqueueError(Exception):
    """Base for kqueue's own errors; the message is one line meant for a person."""


class Retry(Exception):
    """Raised by a handler to ask for another attempt, optionally after a given delay."""

    def __init__(self, delay: timedelta | float | None = None, reason: str = "retry requested") -> None:
        super().__init__(reason)
        self.delay = delay.total_seconds() if isinstance(delay, timedelta) else delay


class Reject(Exception):
    """Raised by a handler to dead-letter the task at once, without retries."""


class DecodeError(KqueueError):
    """A record that cannot become a task (bad payload, unknown schema or type); it is dead-lettered."""

    def __init__(self, reason: str, error_type: str = "DecodeError") -> None:
        super().__init__(reason)
        self.error_type = error_type


class DeliveryError(KqueueError):
    """Kafka did not accept one or more produced records, for a reason that may pass (it is away,
    slow, or the send buffer is full): trying again later can help."""


class RecordTooLarge(KqueueError, ValueError):
    """A record over a size limit: the producer's own (`limit`, bytes) or, `limit` None, the topic's
    max.message.bytes (Kafka refused it). Sending it again cannot help, so it is bad input (a
    ValueError; the REST API answers 413), never a DeliveryError."""

    def __init__(self, message: str, size: int, limit: int | None = None) -> None:
        super().__init__(message)
        self.size = size
        self.limit = limit


class KafkaSettingsError(KqueueError, ValueError):
    """Kafka client settings kqueue cannot use; the one-line message never holds a secret value."""
