"""One training run per run folder: an advisory lock held for the run's whole life.

`train` (fresh or resumed) takes an exclusive `flock` on `.lock` in the run folder; a second `train` on
the same folder is refused at once, naming the process that holds it. The kernel drops the lock when its
process ends, however it ends (kill -9 included), so a stale lock cannot outlive its run. `sample`,
`evaluate` and the rest never take it: the checkpoints they read are written atomically.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from charrnn.errors import CharrnnError

LOCK_NAME = ".lock"


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold the run folder's lock for the block (creating the folder); CharrnnError if another process
    holds it, or if the folder cannot be written."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(run_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise CharrnnError(
            f"cannot write to output folder {run_dir} ({e.strerror}); choose another with --out"
        ) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
            raise CharrnnError(
                f"{run_dir} is being trained by another process (pid {holder}); wait for it to finish or "
                "stop it, or choose another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock; the file stays, empty of meaning
