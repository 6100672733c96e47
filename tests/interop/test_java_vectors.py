"""Drift check for the Java-generated interop vectors in ``schemas/testdata``.

The vectors are produced by the reference Java libraries (Apache Avro's
``BinaryMessageEncoder`` and Kafka's ``Utils.murmur2`` / default partitioner),
see ``interop/java/vectors``.  The ``interop``-marked test rebuilds and reruns
the generator into a temporary directory and asserts the output equals the
committed files, so a change to the schema, the generator or the library
versions cannot silently desynchronise the committed vectors.

The other tests are cheap, Java-free self-consistency checks of the committed
files (header layout, partition arithmetic).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMAS_DIR = REPO_ROOT / "schemas"
TESTDATA_DIR = SCHEMAS_DIR / "testdata"
GENERATOR_DIR = REPO_ROOT / "interop" / "java" / "vectors"
VECTOR_FILES = ("avro_soe.json", "murmur2.json")

# Cold builds download avro/kafka-clients/plugins (~20 s); warm builds take ~5 s.
# Stays below the project-wide pytest-timeout (300 s) so this clear message wins.
MVN_TIMEOUT_S = 280


def _load(path: Path):
    with path.open(encoding="utf-8") as fh:
        return json.load(fh)


@pytest.mark.interop
def test_java_generator_output_matches_committed_vectors(tmp_path: Path) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        pytest.fail(
            "Maven ('mvn') is not on PATH: it is required to regenerate the interop "
            "vectors with the reference Java libraries (interop/java/vectors). "
            "Install Maven + JDK 17, or deselect with -m 'not interop'."
        )
    if shutil.which("java") is None:
        pytest.fail("'java' is not on PATH: JDK 17 is required for the interop vector generator.")

    out_dir = tmp_path / "out"
    build_dir = tmp_path / "target"  # keep the source tree free of build output
    cmd = [
        mvn,
        "-q",
        "-B",
        "-f",
        str(GENERATOR_DIR / "pom.xml"),
        f"-Dvectors.buildDir={build_dir}",
        "compile",
        "exec:java",
        f'-Dexec.args="{SCHEMAS_DIR}" "{out_dir}"',
    ]
    try:
        proc = subprocess.run(
            cmd,
            cwd=GENERATOR_DIR,
            capture_output=True,
            text=True,
            timeout=MVN_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"Java vector generator timed out after {MVN_TIMEOUT_S}s: {' '.join(cmd)}\n{exc}")
    if proc.returncode != 0:
        pytest.fail(
            f"Java vector generator failed (exit {proc.returncode}): {' '.join(cmd)}\n"
            f"--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-4000:]}"
        )

    for name in VECTOR_FILES:
        generated_path = out_dir / name
        assert generated_path.is_file(), f"generator did not write {name}"
        generated = _load(generated_path)
        committed = _load(TESTDATA_DIR / name)
        # Element-wise first for a readable failure, then whole-document equality.
        for i, (g, c) in enumerate(zip(generated, committed, strict=False)):
            assert g == c, (
                f"{name}[{i}] drifted from schemas/testdata/{name}; regenerate with "
                f"the command in schemas/testdata/README.md if the change is intended"
            )
        assert len(generated) == len(committed), f"{name}: vector count drifted"
        assert generated == committed


# --------------------------------------------------------------------------
# Java-free self-consistency checks of the committed vectors.


def test_committed_avro_vectors_are_single_object_encoded() -> None:
    vectors = _load(TESTDATA_DIR / "avro_soe.json")
    assert len(vectors) >= 5
    for v in vectors:
        assert set(v) == {"schema", "fingerprint_hex", "fingerprint_long", "payload", "hex"}
        assert (SCHEMAS_DIR / v["schema"]).is_file()
        raw = bytes.fromhex(v["hex"])
        assert raw[:2] == b"\xc3\x01"
        assert raw[2:10].hex() == v["fingerprint_hex"]
        assert int.from_bytes(raw[2:10], "little", signed=True) == v["fingerprint_long"]
        assert v["hex"] == v["hex"].lower()
        assert "to" in v["payload"]


def test_committed_murmur2_vectors_are_consistent() -> None:
    vectors = _load(TESTDATA_DIR / "murmur2.json")
    assert len(vectors) >= 25
    assert len({v["key"] for v in vectors}) == len(vectors)
    for v in vectors:
        h = v["murmur2"]
        assert -(2**31) <= h < 2**31
        assert set(v["partitions"]) == {"1", "3", "6", "12", "16"}
        for n, p in v["partitions"].items():
            # Kafka: Utils.toPositive(murmur2(keyBytes)) % numPartitions
            assert p == (h & 0x7FFFFFFF) % int(n)
