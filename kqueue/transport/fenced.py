"""A transactional producer used as a lock: whoever initialises a transactional.id last fences the
earlier holder, whose commit then fails. Operations that must not run twice at once (dead-letter
replay) take the id first, then read, then write."""

from __future__ import annotations

from confluent_kafka import KafkaError, KafkaException, Producer

from kqueue.core.errors import KqueueError
from kqueue.core.records import OutRecord
from kqueue.transport.config import producer_config

# Another producer with this transactional.id ran init_transactions after this one.
_FENCED = {KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH}


class Fenced(KqueueError):
    """A newer holder of the transactional.id fenced this one; nothing it wrote is visible."""


class FencedWriter:
    def __init__(self, bootstrap: str, transactional_id: str, timeout: float = 30.0) -> None:
        self._timeout = timeout
        self._producer = Producer(producer_config(bootstrap, **{"transactional.id": transactional_id}))
        self._producer.init_transactions(timeout)  # fences any earlier holder still open

    def commit(self, records: list[OutRecord]) -> None:
        """Write `records` in one transaction; raises Fenced if a newer holder took the id meanwhile."""
        producer = self._producer
        try:
            producer.begin_transaction()
            try:
                for r in records:
                    kwargs: dict[str, object] = {"value": r.value, "key": r.key, "headers": r.headers}
                    if r.partition is not None:
                        kwargs["partition"] = r.partition
                    producer.produce(r.topic, **kwargs)  # type: ignore[arg-type]
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError._FATAL:
                    raise
                # produce() only says "fatal error"; commit_transaction below raises the cause (fenced)
            producer.commit_transaction(self._timeout)
        except KafkaException as exc:
            error: KafkaError = exc.args[0]
            if error.code() in _FENCED:
                raise Fenced(str(error)) from None
            if not error.fatal():  # don't hold read_committed readers until the transaction times out
                producer.abort_transaction(self._timeout)
            raise
