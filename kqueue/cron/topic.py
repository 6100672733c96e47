"""The cron topic's shape, the scheduler group's and transactional id's names, and creating topics."""

from __future__ import annotations

from kqueue.core import names
from kqueue.core.errors import DeliveryError
from kqueue.core.topology import TopicSpec, replication_for
from kqueue.sdk.app import App
from kqueue.transport.admin import KafkaUnavailable, broker_count, ensure_topics, make_admin, unreachable

# Compacted: the latest progress of each schedule and the latest beat of each scheduler are kept
# for good (the leader removes beats older than BEAT_RETENTION_MS). One partition: one leader.
# Segments roll hourly so the cleaner can compact the beats (one a second per scheduler) soon: a new
# leader reads the whole topic before it fires, and it should find hours of beats there, not a week's.
CRON_TOPIC_CONFIG: tuple[tuple[str, str], ...] = (("cleanup.policy", "compact"), ("segment.ms", "3600000"))
BEAT_RETENTION_MS = 24 * 3600 * 1000


def cron_topic_spec(brokers: int, prefix: str = "", replication: int | None = None) -> TopicSpec:
    rf, config = replication_for(brokers, replication)
    return TopicSpec(names.cron_topic(prefix), 1, rf, config + CRON_TOPIC_CONFIG)


def scheduler_group(app: App) -> str:
    """The consumer group of an app's schedulers (its member holding partition 0 leads)."""
    return f"_kqueue.cron.{app.topic_prefix}{app.name}"


def transactional_id(app: App) -> str:
    """One per app and scheduler group: a new leader's init_transactions fences the previous one."""
    return f"kqueue-cron-{app.topic_prefix}{app.name}"


def ensure_cron_topics(app: App, timeout: float = 30.0) -> None:
    """The cron topic and the topics of every scheduled task's queue (idempotent)."""
    admin = make_admin(app.bootstrap_servers)
    try:
        brokers = broker_count(admin, timeout)
        ensure_topics(admin, [cron_topic_spec(brokers, app.topic_prefix, app.replication)], timeout)
    except KafkaUnavailable as exc:
        raise DeliveryError(unreachable(app.bootstrap_servers, timeout, exc, "to set up the cron topic")) from None
    for queue in sorted({entry.queue for entry in app.cron_entries.values()}):
        app.ensure_queue(queue)
