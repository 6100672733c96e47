"""kqueue: a distributed task queue for Python services, built on Apache Kafka."""

import logging

from kqueue.core.errors import DeliveryError, KqueueError, RecordTooLarge, Reject, Retry
from kqueue.core.records import Settlement
from kqueue.core.retry import RetryPolicy
from kqueue.observe.auto_tracing import tracing_when_configured
from kqueue.sdk.app import App, register_default_middleware
from kqueue.sdk.context import TaskContext
from kqueue.sdk.middleware import CommitEvent, EnqueueEvent, Middleware, PartitionEvent, SettleEvent, TickEvent
from kqueue.sdk.task import TaskDef

__all__ = ["App", "CommitEvent", "DeliveryError", "EnqueueEvent", "KqueueError", "Middleware", "PartitionEvent",
           "RecordTooLarge", "Reject", "Retry", "RetryPolicy", "SettleEvent", "Settlement", "TaskContext", "TaskDef",
           "TickEvent"]
__version__ = "0.1.0"

register_default_middleware(tracing_when_configured)  # spans when OpenTelemetry is configured

# A library logs, the application decides where to: nothing reaches stderr unless logging is set up
# (`kqueue consume --log-level` does), so the Kafka client's lines never clutter a one-shot command.
logging.getLogger("kqueue").addHandler(logging.NullHandler())
