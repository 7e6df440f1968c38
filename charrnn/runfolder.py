"""A run folder and the files one training run owns in it.

    best.pt, last.pt                     the checkpoints (written atomically)
    metrics.jsonl                        one record per evaluation
    grad_norms.jsonl, samples.jsonl      the gradient diagnostics and live samples, when asked for
    .lock                                held by the run's process for its whole life (runlock.py)

`RunFolder` says which exist, holds the lock, starts afresh for `--overwrite` (removing every file of the
old run, not only some), and cuts the logs back to a checkpoint when a run resumes, so steps redone after
a kill are not logged twice. The session and the Trainer both use it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from charrnn.errors import BadSetting, CharrnnError
from charrnn.jsonl import read_records, rewrite_records
from charrnn.runlock import run_lock

CHECKPOINTS = ("best.pt", "last.pt")
LOGS = ("metrics.jsonl", "grad_norms.jsonl", "samples.jsonl")


class RunFolder:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.locked = False  # whether this object holds the folder's lock now

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def __str__(self) -> str:
        return str(self.path)

    @property
    def best(self) -> Path:
        return self.path / "best.pt"

    @property
    def last(self) -> Path:
        return self.path / "last.pt"

    def checkpoints(self) -> list[str]:
        """The checkpoints a run left here (a folder holding any holds a run)."""
        return [name for name in CHECKPOINTS if (self.path / name).exists()]

    @contextlib.contextmanager
    def lock(self) -> Iterator[RunFolder]:
        """Hold the folder's lock for the block (nothing more if this object holds it already)."""
        if self.locked:
            yield self
            return
        with run_lock(self.path):
            self.locked = True
            try:
                yield self
            finally:
                self.locked = False

    def start_fresh(self, overwrite: bool) -> None:
        """Make the folder ready for a new run: refuse one holding a run unless `overwrite`, which removes
        all of the old run's files (checkpoints and every log)."""
        existing = self.checkpoints()
        if existing and not overwrite:
            raise BadSetting(
                f"{self.path} already holds a run ({', '.join(existing)}); continue it with --resume "
                f"{self.path}, choose another --out, or pass --overwrite to start afresh",
                setting="out",
            )
        if overwrite:
            for name in CHECKPOINTS + LOGS:
                with contextlib.suppress(FileNotFoundError):
                    (self.path / name).unlink()

    def ensure_writable(self) -> None:
        """Create the folder and check a file can be written in it, before any training."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            probe = self.path / f".write-test-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as e:
            raise CharrnnError(
                f"cannot write to output folder {self.path} ({e.strerror}); choose another with --out",
                setting="out",
            ) from None

    def align_logs(self, history: list[dict], step: int) -> None:
        """Make the logs end where the checkpoint does: metrics.jsonl is rewritten from the checkpoint's
        history; the other logs lose their records past its step."""
        metrics = self.path / "metrics.jsonl"
        if metrics.exists() or history:
            rewrite_records(metrics, history)
        for name in LOGS[1:]:
            log = self.path / name
            if log.exists():
                rewrite_records(log, [r for r in read_records(log) if r.get("step", 0) <= step])
