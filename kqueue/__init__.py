"""kqueue: a distributed task queue for Python services, built on Apache Kafka."""

from kqueue.core.errors import DeliveryError, KqueueError, Reject, Retry
from kqueue.core.retry import RetryPolicy
from kqueue.sdk.app import App
from kqueue.sdk.context import TaskContext
from kqueue.sdk.task import TaskDef

__all__ = ["App", "DeliveryError", "KqueueError", "Reject", "Retry", "RetryPolicy", "TaskContext", "TaskDef"]
__version__ = "0.1.0"
