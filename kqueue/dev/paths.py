"""Where the dev cluster keeps its jars, data and logs (overridable by environment)."""

from __future__ import annotations

import os
from pathlib import Path

# The newest Apache Kafka 4.x release that resolves from Maven Central here (checked 2026-11).
KAFKA_VERSION = "4.4.0"
SCALA_VERSION = "2.13"


def cache_root() -> Path:
    """Root of kqueue's user cache: $KQUEUE_CACHE_DIR, else $XDG_CACHE_HOME/kqueue, else ~/.cache/kqueue."""
    explicit = os.environ.get("KQUEUE_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "kqueue"


def jars_dir(version: str = KAFKA_VERSION) -> Path:
    return cache_root() / f"kafka_{SCALA_VERSION}-{version}"


def default_data_dir() -> Path:
    return Path(os.environ.get("KQUEUE_DEV_DIR", str(cache_root() / "dev-cluster"))).expanduser()
