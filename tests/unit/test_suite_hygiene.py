"""The suite's own rules, held where a reviewer would miss them: a test never skips itself for want
of a package (dev dependencies are installed with the suite) and never accepts any error at all."""

from __future__ import annotations

import re
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "importorskip": re.compile(r"\bimportorskip\("),  # a missing dev dependency must fail, not skip
    "pytest.raises(Exception)": re.compile(r"raises\(\s*(Base)?Exception\s*[,)]"),  # passes on any error: name it
}


def test_no_test_skips_on_a_missing_package_or_accepts_any_error() -> None:
    found = []
    for path in sorted(TESTS.rglob("*.py")):
        if path.resolve() == Path(__file__).resolve():
            continue
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            found += [f"{path.relative_to(TESTS)}:{number}: {name}" for name, pattern in FORBIDDEN.items()
                      if pattern.search(line)]
    assert found == []
