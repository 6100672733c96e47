"""Java-style properties files and `-X KEY=VALUE` options, read without ever echoing a value
(any line may hold a password)."""

from __future__ import annotations

import re
from pathlib import Path

from kqueue.core.errors import KafkaSettingsError


def parse_properties(text: str, source: str = "the Kafka config file", strict: bool = True) -> dict[str, str]:
    """A Java-style properties text: ``key=value`` (or ``key: value``), ``#``/``!`` comments, blank lines,
    a trailing backslash continues a line. Errors name the line, never its text (it may be a secret)."""
    out: dict[str, str] = {}
    logical: list[tuple[int, str]] = []
    pending = ""
    start = 0
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip() if not pending else line.lstrip()
        if not pending and (not stripped or stripped[0] in "#!"):
            continue
        if not pending:
            start = number
        if stripped.endswith("\\") and (len(stripped) - len(stripped.rstrip("\\"))) % 2 == 1:
            pending += stripped[:-1]
            continue
        logical.append((start, pending + stripped))
        pending = ""
    if pending:
        logical.append((start, pending))
    for number, line in logical:
        match = re.search(r"[=:]", line)
        key = line[:match.start()].strip() if match else ""
        if not key:
            if strict:
                raise KafkaSettingsError(f"{source} line {number}: expected key=value")
            continue
        assert match is not None
        out[key] = line[match.end():].strip()
    return out


_file_cache: dict[Path, tuple[tuple[int, int], str]] = {}


def _read_text(path: Path) -> str:
    """The file's text, re-read only when it changed (log redaction asks for it on every record)."""
    stat = path.stat()
    stamp = (stat.st_mtime_ns, stat.st_size)
    cached = _file_cache.get(path)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    text = path.read_text(encoding="utf-8")
    _file_cache[path] = (stamp, text)
    return text


def read_properties_file(path: Path, origin: str, strict: bool) -> dict[str, str]:
    try:
        text = _read_text(path)
    except (OSError, UnicodeDecodeError) as exc:
        if not strict:
            return {}
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
        raise KafkaSettingsError(f"cannot read the Kafka client config {path} (from {origin}): {reason}") from None
    return parse_properties(text, f"{path}", strict=strict)


def parse_option(argument: str, position: int = 1) -> tuple[str, str]:
    """One ``-X KEY=VALUE``. The error does not repeat the argument: it may be a password."""
    key, sep, value = argument.partition("=")
    if not sep or not key.strip():
        raise KafkaSettingsError(f"-X/--kafka-option takes KEY=VALUE, and its use number {position} is not that "
                                 "(not shown here: it may hold a secret)")
    return key.strip(), value
