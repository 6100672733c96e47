"""Which consumer groups' commits mean `completed` to the status view: a group with commits on a
queue's lanes but no members (renamed, retired) holds nothing back; `--group G` counts G only."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from kqueue import App
from kqueue.core import names
from kqueue.transport.admin import make_admin
from kqueue.transport.inspect import groups_with_members
from tests.apps.lifecycle import make_app
from tests.support.api import ApiProcess
from tests.support.kafka import unique
from tests.support.worker import ThreadedWorker, wait_for


def commit_without_members(bootstrap: str, group: str, topic: str, partitions: int) -> None:
    """What a retired group leaves behind: a commit on every partition of a lane, and no member."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})

    def committed() -> bool:
        try:
            consumer.commit(offsets=[TopicPartition(topic, p, 0) for p in range(partitions)], asynchronous=False)
        except KafkaException as exc:  # a topic created a moment ago: its metadata is on its way
            if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise
            return False
        return True

    try:
        wait_for(committed, 30, "the stale group's commit")
    finally:
        consumer.close()


@pytest.fixture()
def queue_with_stale_group(bootstrap: str) -> Iterator[tuple[App, str, str]]:
    queue = unique("groups")
    app = make_app(queue, bootstrap)
    app.ensure_queue(queue)
    stale = unique("renamed-g")
    commit_without_members(bootstrap, stale, names.main_topic(queue, app.topic_prefix), 3)
    yield app, queue, stale


def test_a_group_without_members_holds_no_task_back(queue_with_stale_group: tuple[App, str, str], bootstrap: str,
                                                     tmp_path: Path) -> None:
    app, queue, stale = queue_with_stale_group
    live = unique("live-g")
    nap = app.tasks[(queue, "nap")]  # no kept result: `completed` can only come from the group's commits
    with ApiProcess(bootstrap, queue, tmp_path / "found.db") as found, \
            ApiProcess(bootstrap, queue, tmp_path / "named.db", extra=("--group", live)) as named, \
            ThreadedWorker(app, group=live, concurrency=2):
        wait_for(lambda: groups_with_members(make_admin(bootstrap)).get(live) is True, 30, "the live group")
        assert groups_with_members(make_admin(bootstrap))[stale] is False
        tasks = [nap.enqueue({"seconds": 0}, key=f"k{n}") for n in range(6)]  # on every partition
        app.flush()
        for api in (found, named):
            def all_completed(api: ApiProcess = api) -> bool:
                answers = [api.request("GET", f"/api/v1/tasks/{t}") for t in tasks]
                return all(code == 200 and body["status"] == "completed" for code, body in answers)

            # Before: the found view took the lowest commit of both groups, the stale group's 0.
            wait_for(all_completed, 30, f"every task completed in the view at {api.url}")
        for api in (found, named):  # the group whose lag the queue figures show
            code, queues = api.request("GET", "/api/v1/queues")
            assert code == 200 and next(q for q in queues if q["queue"] == queue)["group"] == live
