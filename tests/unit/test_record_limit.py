"""The record limit's pure decisions, and the producer's check against librdkafka's own (no broker: a
record over the limit never leaves the process)."""

from __future__ import annotations

import pytest

from kqueue.core.errors import DeliveryError, KqueueError, RecordTooLarge
from kqueue.core.oversize import MAX_RECORD_BYTES, record_size, refuse_oversize, refused_as_too_large
from kqueue.transport.producer import TaskProducer, failures_error

NOWHERE = "127.0.0.1:1"  # nothing listens: produce() only queues, nothing is ever delivered
HEADERS = [("kq-id", b"0f7d3f0e-1111-4222-8333-444455556666"), ("kq-type", b"job")]


def _value_for(size: int, key: bytes | None = b"k") -> bytes:
    """A value whose record, with `key` and HEADERS, is `size` bytes by record_size's count."""
    return b"v" * (size - record_size(b"", key, HEADERS))


def test_record_too_large_is_bad_input_not_a_delivery_failure() -> None:
    error = RecordTooLarge("q: too large", 10, 5)
    assert isinstance(error, ValueError) and isinstance(error, KqueueError)
    assert not isinstance(error, DeliveryError)


def test_a_record_at_the_limit_passes_and_one_byte_more_is_refused_naming_the_limit() -> None:
    refuse_oversize("q", _value_for(1000), b"k", HEADERS, 1000)
    with pytest.raises(RecordTooLarge) as caught:
        refuse_oversize("q", _value_for(1001), b"k", HEADERS, 1000)
    assert str(caught.value) == ("q: the record is 1001 bytes (payload, key and headers), over the 1000-byte "
                                 "limit per record")
    assert (caught.value.size, caught.value.limit) == (1001, 1000)


def test_header_values_count_in_utf8_bytes_whatever_their_type() -> None:
    assert record_size(None, None, [("h", "é")]) == record_size(None, None, [("h", "é".encode())])
    assert record_size(None, None, [("h", None)]) == record_size(None, None, [("h", b"")])


def test_a_flush_is_record_too_large_only_when_every_refusal_was_for_size() -> None:
    big = refused_as_too_large("q", 2_000_000)
    assert "max.message.bytes" in str(big) and big.limit is None
    assert isinstance(failures_error([big, refused_as_too_large("q", 3_000_000)]), RecordTooLarge)
    mixed = failures_error([big, DeliveryError("q: Local: Message timed out")])
    assert isinstance(mixed, DeliveryError) and str(mixed).startswith("2 record(s) were not delivered; first: q:")


def test_the_producer_refuses_over_its_limit_and_librdkafka_takes_a_record_at_it() -> None:
    """Our count is an upper bound of librdkafka's own check: a record exactly at the limit is queued
    by librdkafka, one byte more is ours to refuse (before, librdkafka took it too)."""
    producer = TaskProducer(NOWHERE, bound=1.0, **{"message.timeout.ms": 300, "log_level": 0})
    assert producer.record_limit == MAX_RECORD_BYTES
    producer.produce("q", _value_for(MAX_RECORD_BYTES), b"k", HEADERS)
    with pytest.raises(RecordTooLarge, match=f"{MAX_RECORD_BYTES}-byte limit"):
        producer.produce("q", _value_for(MAX_RECORD_BYTES + 1), b"k", HEADERS)
    small = TaskProducer(NOWHERE, bound=1.0, **{"message.max.bytes": 5000, "log_level": 0})
    assert small.record_limit == 5000
