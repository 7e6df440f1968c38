"""JSON-lines logs (`metrics.jsonl`, `grad_norms.jsonl`) that a crash cannot tear.

Each record is appended as one whole line in a single write on an append-only descriptor, starting on a
fresh line if a killed process left a partial one. Readers skip a line that does not parse (a torn last
line) and say so on stderr.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

from charrnn.atomic import atomic_write


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def append_record(path: Path, record: dict) -> None:
    """Append `record` as one line, written and flushed in one system call."""
    line = (json.dumps(record) + "\n").encode()
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = b"\n" + line  # a torn line before us stays alone on its line
        os.write(fd, line)
    finally:
        os.close(fd)


def read_records(path: Path, warn: Callable[[str], None] = _warn) -> list[dict]:
    """The records of a JSON-lines file; lines that do not parse are skipped with a warning."""
    records = []
    try:
        lines = Path(path).read_bytes().split(b"\n")
    except FileNotFoundError:
        return records
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except ValueError:
            record = None
        if not isinstance(record, dict):
            warn(f"{path}: skipped line {number}, which is not a whole record (a write cut short?)")
            continue
        records.append(record)
    return records


def rewrite_records(path: Path, records: Iterable[dict]) -> None:
    """Replace the file with these records, atomically."""
    with atomic_write(path) as f:
        f.write(b"".join((json.dumps(r) + "\n").encode() for r in records))
