"""murmur2 / partition_for_key against vectors from Java's org.apache.kafka.common.utils.Utils."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kqueue.core.murmur2 import murmur2, partition_for_key

VECTORS_PATH = Path(__file__).resolve().parents[2] / "schemas" / "testdata" / "murmur2.json"
VECTORS = json.loads(VECTORS_PATH.read_text(encoding="utf-8"))


def test_vector_file_is_substantial() -> None:
    # Guards against the parametrized tests below silently running on an empty list.
    assert len(VECTORS) >= 40
    keys = [v["key"] for v in VECTORS]
    assert len(set(keys)) == len(keys)
    # The tail handling (length % 4 == 0..3) and multi-byte UTF-8 are all covered.
    assert {len(k.encode()) % 4 for k in keys} == {0, 1, 2, 3}
    assert any(len(k.encode()) != len(k) for k in keys)


@pytest.mark.parametrize("vector", VECTORS, ids=[repr(v["key"])[:40] for v in VECTORS])
def test_murmur2_matches_java(vector: dict) -> None:
    assert murmur2(vector["key"].encode("utf-8")) == vector["murmur2"]


@pytest.mark.parametrize("vector", VECTORS, ids=[repr(v["key"])[:40] for v in VECTORS])
def test_partition_for_key_matches_java(vector: dict) -> None:
    key = vector["key"].encode("utf-8")
    assert vector["partitions"], "vector without partition counts"
    for count, expected in vector["partitions"].items():
        assert partition_for_key(key, int(count)) == expected, f"partitions={count}"


def test_every_vector_checks_the_same_partition_counts() -> None:
    counts = {tuple(sorted(int(n) for n in v["partitions"])) for v in VECTORS}
    assert counts == {(1, 3, 6, 12, 16)}


def test_murmur2_is_signed_int32_and_deterministic() -> None:
    seen = set()
    for i in range(2000):
        key = f"key-{i}".encode()
        h = murmur2(key)
        assert -(2**31) <= h < 2**31
        assert murmur2(key) == h
        seen.add(h)
    # A hash worth the name: essentially no collisions on 2000 short distinct keys.
    assert len(seen) >= 1999
    assert any(h < 0 for h in seen)
    assert any(h > 0 for h in seen)


def test_partition_for_key_in_range_and_spread() -> None:
    for partitions in (1, 2, 3, 7, 16, 100):
        hits = [0] * partitions
        for i in range(1600):
            p = partition_for_key(f"user-{i}".encode(), partitions)
            assert 0 <= p < partitions
            hits[p] += 1
        # Every partition gets some keys: the partitioner does not collapse onto a few.
        assert min(hits) > 0


def test_partition_is_to_positive_not_abs() -> None:
    # Java's toPositive masks the sign bit (h & 0x7fffffff); abs() would differ for negative hashes.
    negatives = [v for v in VECTORS if v["murmur2"] < 0]
    assert negatives
    differs = False
    for v in negatives:
        key = v["key"].encode()
        masked = v["murmur2"] & 0x7FFFFFFF
        assert partition_for_key(key, 16) == masked % 16
        differs = differs or (abs(v["murmur2"]) % 16 != masked % 16)
    assert differs, "vectors should include a key where abs() and toPositive() disagree"
