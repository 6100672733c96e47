"""Reading a group's committed offsets asks again while the coordinator is moving or loading (seen
as `kqueue stats` failing on "Not coordinator" on a loaded machine), and gives up on anything else."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from kqueue.transport.inspect import _committed


class Coordinator:
    def __init__(self, failures: list[int]) -> None:
        self.failures = failures
        self.asked = 0

    def committed(self, tps: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        self.asked += 1
        if self.failures:
            raise KafkaException(KafkaError(self.failures.pop(0)))
        return [TopicPartition(tp.topic, tp.partition, 7) for tp in tps]


def test_not_coordinator_and_loading_are_asked_again() -> None:
    consumer: Any = Coordinator([KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS])
    [tp] = _committed(consumer, [TopicPartition("q", 0)], timeout=5)
    assert (tp.offset, consumer.asked) == (7, 3)


def test_other_errors_are_not_retried() -> None:
    consumer: Any = Coordinator([KafkaError.GROUP_AUTHORIZATION_FAILED])
    with pytest.raises(KafkaException):
        _committed(consumer, [TopicPartition("q", 0)], timeout=5)
    assert consumer.asked == 1
