"""The cron scheduler: every process running it beats; the one holding the cron topic's partition 0 fires.

A leader's term: take the transactional id (fencing any earlier leader and ending its open
transaction), read the topic to the end it has then, decide the missed ticks (kqueue/cron/plan.py),
then fire each tick when due. A tick is fired by ONE transaction holding the tick's task record
(id `cron:<name>:<tick>`) and the schedule's new progress, so a tick is either wholly fired or not
at all, and whoever leads next starts from the committed progress: no tick is fired twice, and none
is lost while some scheduler lives. A write that fails (or whose outcome is unknown) ends the term's
certainty: the leader takes the id again and re-reads before it fires anything more.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from kqueue.core import names
from kqueue.core.headers import now_ms
from kqueue.cron.log import Beat, CronLog, Progress, member_key, progress_key
from kqueue.cron.plan import BEAT_EVERY, TickPlan, alive, plan_ticks
from kqueue.cron.topic import BEAT_RETENTION_MS, ensure_cron_topics, scheduler_group, transactional_id
from kqueue.sdk.app import App
from kqueue.sdk.cron import CronEntry
from kqueue.transport.cron_edge import BeatWriter, CronFenced, CronWriteError, Leadership, Outgoing, TickWriter

log = logging.getLogger("kqueue.cron")

RETAKE_AFTER = 1.0  # seconds after a failed write before the id is taken again (Kafka may be away)
FENCED_WAIT = 30.0  # fenced while the group still says we lead: take the id again after this long
MAX_WAIT = 0.2  # the loop's longest poll: how late a stop or a beat may be


@dataclass
class Term:
    """One stretch of leadership: its writer, what it has read, and each schedule's progress."""

    number: int
    writer: TickWriter
    log: CronLog
    end: int  # read up to here (taken after the id was taken) before deciding anything
    ready: bool = False
    progress: dict[str, Progress] = field(default_factory=dict)
    next_due: dict[str, int | None] = field(default_factory=dict)


class CronScheduler:
    def __init__(self, app: App, clock: Callable[[], float] = time.time) -> None:
        self.app = app
        self.entries = list(app.cron_entries.values())
        self.member = uuid.uuid4().hex[:12]
        self.since_ms = now_ms()
        self.fired = 0  # ticks this process enqueued
        self._clock = clock
        self._stop = threading.Event()
        self._term: Term | None = None
        self._log = CronLog(app.name)
        self._log_term = 0
        self._retake_at = 0.0
        self._fenced: tuple[int, float] | None = None  # (term, when) a newer leader fenced this one
        self._beats: BeatWriter | None = None

    def request_stop(self) -> None:
        self._stop.set()

    @property
    def leading(self) -> bool:
        return self._term is not None and self._term.ready

    def run(self) -> None:
        """Beat, lead when chosen, until `request_stop`. Raises DeliveryError if Kafka cannot be set up."""
        ensure_cron_topics(self.app)
        topic = names.cron_topic(self.app.topic_prefix)
        beats = self._beats = BeatWriter(self.app.bootstrap_servers, topic)
        leadership = Leadership(self.app.bootstrap_servers, scheduler_group(self.app), topic)
        log.info("cron scheduler %s (pid %d) for %d schedule(s) of %s", self.member, os.getpid(),
                 len(self.entries), self.app.name)
        next_beat = 0.0
        try:
            while not self._stop.is_set():
                records = leadership.poll(self._wait())
                if leadership.term != self._log_term:  # a new assignment reads the topic from its start
                    self._log, self._log_term = CronLog(self.app.name), leadership.term
                for key, value in records:
                    self._log.apply(key, value)
                self._lead(leadership)
                if time.monotonic() >= next_beat:
                    beats.send(member_key(self.app.name, self.member), self._beat().encode())
                    next_beat = time.monotonic() + BEAT_EVERY
        finally:
            self._end_term("stopping")
            beats.send(member_key(self.app.name, self.member), self._beat(stopped=True).encode())
            beats.flush(5.0)
            leadership.close()

    # -- leadership --------------------------------------------------------------------------------
    def _lead(self, leadership: Leadership) -> None:
        if not leadership.leading:
            self._end_term("partition 0 went to another scheduler")
            self._fenced = None
            return
        term = self._term
        if term is not None and term.number != leadership.term:
            self._end_term("leadership changed hands")
            term = None
        if term is None:
            term = self._begin_term(leadership)
            if term is None:
                return
        if not term.ready:
            if leadership.position() < term.end:
                return
            term.ready = True
            self._take_over(term)
        if self._term is term:
            self._fire_due(term)

    def _begin_term(self, leadership: Leadership) -> Term | None:
        now = time.monotonic()
        if now < self._retake_at:
            return None
        if self._fenced is not None and self._fenced[0] == leadership.term and now - self._fenced[1] < FENCED_WAIT:
            return None  # the group has not told us yet that another member leads: wait for it
        writer: TickWriter | None = None
        try:
            writer = TickWriter(self.app.bootstrap_servers, transactional_id(self.app))
            low, high = leadership.end_offsets()  # after the id: the old leader's transaction is settled
        except CronWriteError as exc:
            log.warning("cron: cannot take the lead yet: %s", exc)
            if writer is not None:
                writer.close()
            self._retake_at = now + RETAKE_AFTER
            return None
        self._fenced = None
        self._term = Term(leadership.term, writer, self._log, high, ready=high <= low)
        if self._term.ready:
            self._take_over(self._term)
        return self._term

    def _end_term(self, why: str) -> None:
        term, self._term = self._term, None
        if term is None:
            return
        if term.ready:
            log.info("cron: no longer leading (%s)", why)
        term.writer.close()

    def _take_over(self, term: Term) -> None:
        """Decide every schedule's missed ticks from the topic just read, and fire them."""
        now = self._clock()
        lived = alive(term.log.members.values(), self.since_ms, now)
        log.info("cron: leading %d schedule(s) of %s (scheduler %s, pid %d)", len(self.entries), self.app.name,
                 self.member, os.getpid())
        for entry in self.entries:
            progress = term.log.progress.get(entry.name)
            plan = plan_ticks(entry.schedule, progress, int(now), lived, entry.catch_up)
            self._report(entry, plan, now)
            if not self._write(term, entry, plan, progress):
                return
        self._prune_beats(term, now)

    def _fire_due(self, term: Term) -> None:
        now = self._clock()
        for entry in self.entries:
            due = term.next_due.get(entry.name)
            if due is None or due > now:
                continue
            plan = plan_ticks(entry.schedule, term.progress.get(entry.name), int(now),
                              [(self.since_ms / 1000, now)], entry.catch_up)
            if plan.fire and plan.fire[0] < now - 2 * BEAT_EVERY:
                self._report(entry, plan, now)
            if not self._write(term, entry, plan, term.progress.get(entry.name)):
                return

    def _write(self, term: Term, entry: CronEntry, plan: TickPlan, progress: Progress | None) -> bool:
        """Fire the plan's ticks with the new progress in one transaction; False if the term ended."""
        if plan.handled is None:
            if progress is not None:
                term.progress[entry.name] = progress
                term.next_due[entry.name] = entry.schedule.next_after(progress.handled)
            return True
        fired = plan.fire[-1] if plan.fire else (progress.fired if progress is not None else None)
        new = Progress(plan.handled, fired, entry.schedule.expression, entry.schedule.tz_name, now_ms())
        prefix = self.app.topic_prefix
        records: list[Outgoing] = [entry.record(tick, prefix) for tick in plan.fire]
        records.append((names.cron_topic(prefix), progress_key(self.app.name, entry.name), new.encode(), []))
        try:
            term.writer.commit(records)
        except CronFenced as exc:
            log.warning("cron: another scheduler took the lead (%s)", exc)
            self._fenced = (term.number, time.monotonic())
            self._end_term("fenced")
            return False
        except CronWriteError as exc:
            log.warning("cron: tick(s) of %s not written (%s); reading the topic again before firing more",
                        entry.name, exc)
            self._retake_at = time.monotonic() + RETAKE_AFTER
            self._end_term("write failed")
            return False
        self.fired += len(plan.fire)
        for tick in plan.fire:
            log.debug("cron: %s fired tick %d (%s)", entry.name, tick, entry.schedule.local(tick).isoformat())
        term.progress[entry.name] = new
        term.next_due[entry.name] = entry.schedule.next_after(new.handled)
        return True

    def _report(self, entry: CronEntry, plan: TickPlan, now: float) -> None:
        if plan.anchored:
            log.info("cron: %s starts now (no progress under %r %s yet)", entry.name, entry.schedule.expression,
                     entry.schedule.tz_name)
        for start, end in plan.outages:
            what = "fired its latest tick once" if entry.catch_up else "skipped them (catch_up=False)"
            log.info("cron: %s missed ticks in %d..%d while no scheduler ran; %s", entry.name, start, end, what)
        late = [t for t in plan.fire if t < now - 2 * BEAT_EVERY]
        if late:
            log.info("cron: %s fires %d late tick(s), the oldest %.0fs late", entry.name, len(late), now - late[0])
        if plan.dropped:
            log.warning("cron: %s: %d missed tick(s) beyond the latest %d were not fired", entry.name,
                        plan.dropped, len(plan.fire))

    def _prune_beats(self, term: Term, now: float) -> None:
        """Forget schedulers silent for a day (their beats would otherwise stay in the compacted topic)."""
        if self._beats is None:
            return
        for key in stale_beats(term.log, int(now * 1000)):
            self._beats.send(key, None)

    def _beat(self, stopped: bool = False) -> Beat:
        return Beat(self.member, self.since_ms, now_ms(), os.getpid(), socket.gethostname(),
                    leader=self.leading and not stopped, stopped=stopped)

    def _wait(self) -> float:
        term = self._term
        if term is None or not term.ready:
            return MAX_WAIT
        dues = [d for d in term.next_due.values() if d is not None]
        return max(0.0, min(MAX_WAIT, min(dues, default=0) - self._clock())) if dues else MAX_WAIT


def stale_beats(log_: CronLog, now_ms_: int, keep_ms: int = BEAT_RETENTION_MS) -> list[bytes]:
    """Keys of beats older than `keep_ms`: tombstoned by the leader."""
    return [member_key(log_.app, b.member) for b in log_.members.values() if now_ms_ - b.at_ms > keep_ms]
