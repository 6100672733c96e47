"""What `kqueue cron list` shows (and what an API route would serve): each schedule with its next
fire time and last fired tick, and the schedulers alive. `schedule_rows` is pure; `read_cron_log`
reads the cron topic once, to its end."""

from __future__ import annotations

from dataclasses import dataclass

from kqueue.core import names
from kqueue.cron.log import Beat, CronLog
from kqueue.cron.plan import BEAT_EVERY, BEAT_SLACK
from kqueue.sdk.app import App
from kqueue.transport.topic_reader import TopicReader, read_to_end

# A scheduler whose last beat is older than this is not listed as alive.
SILENT_AFTER_MS = int((BEAT_EVERY + BEAT_SLACK) * 1000)


@dataclass(frozen=True)
class ScheduleRow:
    name: str
    queue: str
    task: str
    expression: str
    tz: str
    catch_up: bool
    next_fire: int | None  # epoch s
    last_fired: int | None  # epoch s, from the topic (None: never, or not read)


def schedule_rows(app: App, now: float, log: CronLog | None) -> list[ScheduleRow]:
    rows = []
    for name, entry in sorted(app.cron_entries.items()):
        progress = log.progress.get(name) if log is not None else None
        rows.append(ScheduleRow(name, entry.queue, entry.task.name, entry.schedule.expression,
                                entry.schedule.tz_name, entry.catch_up, entry.schedule.next_after(int(now)),
                                progress.fired if progress is not None else None))
    return rows


def live_schedulers(log: CronLog, now_ms: int) -> list[Beat]:
    """Schedulers that beat recently and did not stop, the leader first."""
    beats = [b for b in log.members.values() if not b.stopped and now_ms - b.at_ms <= SILENT_AFTER_MS]
    return sorted(beats, key=lambda b: (not b.leader, b.since_ms))


def read_cron_log(app: App, stalled_after: float = 10.0) -> CronLog:
    """The app's records of the cron topic, read to its end (TopicReadError if Kafka does not answer)."""
    log = CronLog(app.name)
    topic = names.cron_topic(app.topic_prefix)
    reader = TopicReader(app.bootstrap_servers, "cron-list")
    try:
        exists = bool(reader.partitions(topic))
    finally:
        reader.close()
    if not exists:  # no scheduler ever ran against this cluster and prefix
        return log
    for record in read_to_end(app.bootstrap_servers, [(topic, 0)], "cron-list", stalled_after):
        log.apply(record.key(), record.value())
    return log
