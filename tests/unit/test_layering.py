"""The layering the design promises, checked on the source: one Kafka edge, an SDK that stands alone."""

from __future__ import annotations

import re
from pathlib import Path

KQUEUE = Path(__file__).resolve().parents[2] / "kqueue"


def _imports(path: Path) -> list[str]:
    return re.findall(r"^\s*(?:from|import)\s+([\w.]+)", path.read_text(encoding="utf-8"), re.MULTILINE)


def test_only_transport_imports_confluent_kafka() -> None:
    outside = sorted(str(p.relative_to(KQUEUE)) for p in KQUEUE.rglob("*.py")
                     if "transport" not in p.relative_to(KQUEUE).parts
                     and any(name.split(".")[0] == "confluent_kafka" for name in _imports(p)))
    assert outside == []


def test_the_sdk_imports_neither_observe_nor_view_nor_worker() -> None:
    leaks = sorted(f"{p.name}: {name}" for p in (KQUEUE / "sdk").glob("*.py") for name in _imports(p)
                   if name.startswith(("kqueue.observe", "kqueue.view", "kqueue.worker", "kqueue.api")))
    assert leaks == []


def test_nothing_imports_a_private_confluent_module() -> None:
    private = sorted(str(p.relative_to(KQUEUE)) for p in KQUEUE.rglob("*.py")
                     if any(re.search(r"confluent_kafka(\.\w+)*\._", name) for name in _imports(p)))
    assert private == []
