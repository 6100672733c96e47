"""Delivery reports for asyncio callers: a report reaching a caller that stopped waiting is harmless, and
the poller thread keeps serving reports whatever a callback does. No broker: the records here time out."""

from __future__ import annotations

import asyncio
import threading

import pytest

from kqueue.core.errors import DeliveryError
from kqueue.transport.producer import AcknowledgedProducer, settle_waiter

NOWHERE = "127.0.0.1:1"  # nothing listens: every record fails with a timeout after message.timeout.ms


def test_a_report_for_a_waiting_caller_settles_it() -> None:
    async def scenario() -> None:
        delivered: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        refused: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        assert settle_waiter(delivered, None)
        assert settle_waiter(refused, "q: Local: Message timed out")
        assert delivered.result() is None
        with pytest.raises(DeliveryError, match="q: Local: Message timed out"):
            refused.result()

    asyncio.run(scenario())


def test_a_report_for_a_cancelled_caller_is_refused_without_raising() -> None:
    async def scenario() -> None:
        gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        gone.cancel()
        assert not settle_waiter(gone, None)
        assert not settle_waiter(gone, "q: Local: Message timed out")
        assert gone.cancelled()

    asyncio.run(scenario())


def _timing_out_producer() -> AcknowledgedProducer:
    return AcknowledgedProducer(NOWHERE, bound=5.0, **{"message.timeout.ms": 300, "log_level": 0})


def test_the_poller_keeps_serving_after_a_callback_raises() -> None:
    producer = _timing_out_producer()
    raised = threading.Event()

    def broken_hook(err: object) -> None:
        raised.set()
        raise RuntimeError("a bug in someone's delivery hook")

    async def scenario() -> None:
        with pytest.raises(DeliveryError, match="timed out"):  # starts the poller
            await asyncio.wait_for(producer.produce_acknowledged("q", b"first"), 5)
        producer.produce("q", b"second", on_error=broken_hook)  # its report is served by the poller
        assert await asyncio.to_thread(raised.wait, 5), "the poller never served the second report"
        with pytest.raises(DeliveryError, match="timed out"):  # still served: no hang
            await asyncio.wait_for(producer.produce_acknowledged("q", b"third"), 5)

    asyncio.run(scenario())


def test_a_failure_nobody_awaits_any_more_surfaces_on_flush() -> None:
    producer = _timing_out_producer()

    async def cancel_while_waiting() -> None:
        waiting = asyncio.create_task(producer.produce_acknowledged("q", b"abandoned"))
        await asyncio.sleep(0)  # it runs up to its first pause: produced, awaiting the report
        assert not waiting.done()
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting

    asyncio.run(cancel_while_waiting())
    with pytest.raises(DeliveryError, match=r"1 record\(s\) were not delivered; first: q: Local: Message timed out"):
        producer.flush(timeout=5)
