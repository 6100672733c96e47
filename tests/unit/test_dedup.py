"""Idempotency and unique claims without a broker: ids, the admission decision, and the worker's
gate (a loader standing in for reading Q.dedup)."""

from __future__ import annotations

import pytest

import kqueue
from kqueue.core import names
from kqueue.core.dedup import (
    IDEMPOTENCY,
    UNIQUE,
    Claim,
    ClaimBook,
    claim_key,
    decide,
    idempotent_task_id,
    payload_unique_key,
)
from kqueue.core.records import RecordKind
from kqueue.worker.dedup_gate import DedupGate
from kqueue.worker.work import WorkItem

NOW = 1_800_000_000_000


def test_idempotent_ids_are_stable_and_scoped() -> None:
    one = idempotent_task_id("q", "charge", "order-1")
    assert one == idempotent_task_id("q", "charge", "order-1")
    assert len({one, idempotent_task_id("q", "charge", "order-2"), idempotent_task_id("q", "refund", "order-1"),
                idempotent_task_id("other", "charge", "order-1")}) == 4
    assert payload_unique_key(b'{"a":1}') == payload_unique_key(b'{"a":1}') != payload_unique_key(b'{"a":2}')


def test_decide() -> None:
    holder = Claim(IDEMPOTENCY, "t1", "q/0/5", NOW - 10, NOW + 1000)
    assert decide(None, "q/0/9", NOW).verdict == "claim"
    assert decide(holder, "q/0/5", NOW).verdict == "run"  # its own retry or re-delivery
    duplicate = decide(holder, "q/0/9", NOW)
    assert (duplicate.verdict, duplicate.holder) == ("duplicate", holder)
    assert decide(holder, "q/0/9", NOW + 1000).verdict == "claim"  # the window is over
    assert Claim.decode(holder.encode()) == holder


class Loader:
    def __init__(self, claims: dict[str, Claim] | None = None) -> None:
        self.claims = claims or {}
        self.calls: list[tuple[str, int]] = []

    def __call__(self, topic: str, partition: int) -> dict[str, Claim]:
        self.calls.append((topic, partition))
        return dict(self.claims)


def _app() -> kqueue.App:
    app = kqueue.App("t", "localhost:1", topic_prefix="p.")

    @app.task(queue="q", idempotency_window=60)
    def charge(payload: object) -> None: ...

    @app.task(queue="q", unique_for=30)
    def sync(payload: object) -> None: ...

    return app


def _item(app: kqueue.App, task: str, offset: int, headers: dict[str, str], partition: int = 2) -> WorkItem:
    raw = [(k, v.encode()) for k, v in {names.H_TYPE: task, names.H_ID: f"id-{offset}", **headers}.items()]
    return WorkItem("p.q", partition, offset, b"k", b"{}", raw, "q", task=app.tasks[("q", task)])


def test_the_first_of_a_key_claims_and_the_rest_are_duplicates() -> None:
    app = _app()
    loader = Loader()
    gate = DedupGate("p.", loader)
    book = gate.load(_item(app, "charge", 10, {}), 0)
    first = gate.admit(_item(app, "charge", 10, {names.H_IDEMPOTENCY_KEY: "o-1"}), book, NOW)
    assert first is not None and first.run and first.claim is not None
    record = first.claim
    assert (record.kind, record.topic, record.partition, record.key) == (
        RecordKind.CLAIM, "p.q.dedup", 2, claim_key(IDEMPOTENCY, "charge", "o-1").encode())
    assert record.value is not None
    claim = Claim.decode(record.value)
    assert (claim.task_id, claim.origin, claim.until_ms) == ("id-10", "p.q/2/10", NOW + 60_000)
    second = gate.admit(_item(app, "charge", 11, {names.H_IDEMPOTENCY_KEY: "o-1"}), book, NOW)
    assert second is not None and not second.run and second.holder == claim and not second.unique
    retry = gate.admit(_item(app, "charge", 40, {names.H_IDEMPOTENCY_KEY: "o-1", names.H_ORIGIN: "p.q/2/10"}), book,
                       NOW)
    assert retry is not None and retry.run and retry.claim is None
    assert gate.admit(_item(app, "charge", 12, {}), book, NOW) is None  # no key: not the gate's business
    assert loader.calls == [("p.q.dedup", 2)]
    book.end()  # a lane of its queue-partition was handed over: the book decides nothing more
    assert gate.admit(_item(app, "charge", 13, {names.H_IDEMPOTENCY_KEY: "o-2"}), book, NOW) is None


def test_claims_read_back_decide_like_the_owner_that_wrote_them() -> None:
    app = _app()
    written = Claim(IDEMPOTENCY, "id-3", "p.q/2/3", NOW - 5000, NOW + 5000)
    gate = DedupGate("p.", Loader({claim_key(IDEMPOTENCY, "charge", "o-1"): written}))
    book = gate.load(_item(app, "charge", 20, {}), 0)
    again = gate.admit(_item(app, "charge", 20, {names.H_IDEMPOTENCY_KEY: "o-1"}), book, NOW)
    assert again is not None and not again.run and again.holder == written
    done_elsewhere = gate.admit(_item(app, "charge", 21, {names.H_IDEMPOTENCY_KEY: "o-9"}), book, NOW,
                                finished=True)
    assert done_elsewhere is not None and done_elsewhere.claim is not None  # completed, still claims its key


def test_a_unique_key_is_held_until_the_final_settlement() -> None:
    app = _app()
    gate = DedupGate("p.", Loader())
    book = ClaimBook({})
    holder_item = _item(app, "sync", 5, {names.H_UNIQUE_KEY: "acct", names.H_UNIQUE_FOR: "30"})
    holder = gate.admit(holder_item, book, NOW)
    assert holder is not None and holder.run and holder.unique and holder_item.claim_key is not None
    assert holder.claim is not None and holder.claim.value is not None
    assert Claim.decode(holder.claim.value).until_ms == NOW + 30_000
    dup = gate.admit(_item(app, "sync", 6, {names.H_UNIQUE_KEY: "acct"}), book, NOW)
    assert dup is not None and not dup.run and dup.unique
    released = gate.release(holder_item, book)
    assert released is not None and released.value is None and released.key == holder.claim.key
    assert gate.release(holder_item, book) is None  # once
    after = gate.admit(_item(app, "sync", 7, {names.H_UNIQUE_KEY: "acct"}), book, NOW)
    assert after is not None and after.run and after.claim is not None
    finished = gate.admit(_item(app, "sync", 8, {names.H_UNIQUE_KEY: "other"}), book, NOW, finished=True)
    assert finished is None  # a finished unique task holds nothing


def test_enqueue_with_keys() -> None:
    app = _app()
    charge, sync = app.tasks[("q", "charge")], app.tasks[("q", "sync")]
    task_id, topic, _, key, headers = charge._record(b"{}", None, "normal", "o-1", None)
    assert task_id == idempotent_task_id("q", "charge", "o-1") and key == b"o-1" and topic == "p.q"
    _, _, _, key, headers = sync._record(b'{"a":1}', None, "normal", None, None)
    values = dict(headers)
    assert values[names.H_UNIQUE_KEY] == payload_unique_key(b'{"a":1}').encode() and values[names.H_UNIQUE_FOR] == b"30"
    assert key == values[names.H_UNIQUE_KEY]  # duplicates meet on one partition
    with pytest.raises(ValueError, match="unique_for"):
        charge._record(b"{}", None, "normal", None, None, unique_key="x")
    with pytest.raises(ValueError, match="empty"):
        charge._record(b"{}", None, "normal", "", None)
    with pytest.raises(ValueError, match="unique_for must be"):
        app.task(queue="q", name="bad", unique_for=0)(lambda p: None)
    assert UNIQUE != IDEMPOTENCY


def test_a_release_held_at_its_claims_offset_is_written_after_the_claim() -> None:
    """Both wait for the same commit: in the order held, or the next owner would load a claim that
    was already released (and cancel every later task of the key as a duplicate)."""
    from kqueue.worker.partitions import PartitionOwner

    app = _app()
    for _ in range(200):  # the order once depended on memory addresses
        gate = DedupGate("p.", Loader())
        book = ClaimBook({})
        item = _item(app, "sync", 5, {names.H_UNIQUE_KEY: "acct"})
        admission = gate.admit(item, book, NOW)
        assert admission is not None and admission.claim is not None
        owner = PartitionOwner(("p.q", 2), False, edge=None)  # type: ignore[arg-type]  # never pauses here
        owner.track(5)
        owner.hold_records(5, [admission.claim])
        released = gate.release(item, book)
        assert released is not None
        owner.route(5, [released])
        piece = owner.take_for_commit(100)
        assert piece is not None and piece.position == 6
        written = [records[0] for _, records in piece.released]
        assert [r.value is None for r in written] == [False, True]


def test_a_release_from_an_ended_book_frees_nothing() -> None:
    """Defect: a stale ownership's end freed the claim the next ownership holds (same worker, the
    partition lost and assigned again). An ended book refuses: no tombstone, the claim stays."""
    app = _app()
    gate = DedupGate("p.", Loader())
    old_book = ClaimBook({})
    first = _item(app, "sync", 5, {names.H_UNIQUE_KEY: "acct"})
    assert gate.admit(first, old_book, NOW) is not None
    old_book.end()  # lost
    new_book = ClaimBook(dict(old_book.claims))  # the next ownership reads the claim back
    rerun = _item(app, "sync", 5, {names.H_UNIQUE_KEY: "acct"})
    assert gate.admit(rerun, new_book, NOW) is not None
    assert gate.release(first, old_book) is None  # the old run ends: frees nothing
    second = gate.admit(_item(app, "sync", 6, {names.H_UNIQUE_KEY: "acct"}), new_book, NOW)
    assert second is not None and not second.run  # still a duplicate while the re-run runs


def test_expired_claims_are_swept_from_memory() -> None:
    book = ClaimBook({"a": Claim(UNIQUE, "t1", "q/0/1", NOW - 10, NOW - 1),
                      "b": Claim(UNIQUE, "t2", "q/0/2", NOW - 10, NOW + 1000)})
    assert book.sweep(NOW) == ["a"] and list(book.claims) == ["b"]
    assert book.sweep(NOW + 1000) == ["b"] and book.claims == {}
