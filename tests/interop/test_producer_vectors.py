"""The Go and Java producers (interop/go, interop/java/producer) check the shared vectors in
schemas/testdata with their own unit tests (`go test`, `mvn test`); these run them so CI's pytest
covers both languages."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.interop.toolchains import JAVA_PRODUCER_DIR, TEST_TIMEOUT_S, mvn_command, run, run_go

GO_TESTS = ("TestSingleObjectEncodingMatchesJavaVectors", "TestDefaultPartitionerMatchesJavaVectors",
            "TestHeadersAreTheDocumentedOnes", "TestMinimalTaskAndBadInput")


@pytest.mark.interop
@pytest.mark.timeout(TEST_TIMEOUT_S)  # a cold build; warm, about 1 s
def test_go_package_passes_the_shared_vectors() -> None:
    proc = run_go(["test", "-count=1", "-v", "./..."])
    passed = set(re.findall(r"^--- PASS: (\w+)", proc.stdout, re.MULTILINE))
    assert passed == set(GO_TESTS), proc.stdout[-3000:]
    assert "--- FAIL" not in proc.stdout


@pytest.mark.interop
@pytest.mark.timeout(TEST_TIMEOUT_S)  # a cold build; warm, about 10 s
def test_java_producer_passes_the_shared_vectors(tmp_path: Path) -> None:
    build = tmp_path / "target"  # the source tree stays free of build output
    run([*mvn_command(), f"-Dproducer.buildDir={build}", "test"], cwd=JAVA_PRODUCER_DIR)
    reports = list((build / "surefire-reports").glob("TEST-*.xml"))
    assert len(reports) == 1, reports
    suite = ET.parse(reports[0]).getroot()
    counts = {name: int(suite.get(name, "-1")) for name in ("tests", "failures", "errors", "skipped")}
    assert counts == {"tests": 4, "failures": 0, "errors": 0, "skipped": 0}
