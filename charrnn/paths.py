"""Where charrnn keeps files outside the project: the cache of downloaded, built and encoded corpora, and
the bound that keeps a copy of an endless source (standard input, a pipe, /dev/zero) from filling a disk."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sized
from pathlib import Path
from typing import BinaryIO, TypeVar

from charrnn.errors import NoSpace

# A copy into a temporary file stops while the larger of these is still free on its file system.
SPACE_MARGIN_BYTES = 1 << 30
SPACE_MARGIN_FRACTION = 0.05
SPACE_MARGIN_TEXT = "the larger of 1 GiB and 5% of the file system"
SPACE_CHECK_BYTES = 16 << 20  # free space is asked (os.statvfs) once per this many bytes written
_Chunk = TypeVar("_Chunk", bound=Sized)


def cache_dir(*parts: str) -> Path:
    """$CHARRNN_CACHE_DIR, else $XDG_CACHE_HOME/charrnn, else ~/.cache/charrnn (created on demand)."""
    base = os.environ.get("CHARRNN_CACHE_DIR")
    if base:
        root = Path(base)
    else:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "charrnn"
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def reopen(fd: int) -> BinaryIO:
    """A file object reading an open descriptor's file from the start, leaving the descriptor open: how a
    file with no name (an unlinked spool) is read again. It shares the descriptor's offset, so one reader
    at a time."""
    f = os.fdopen(os.dup(fd), "rb")
    f.seek(0)
    return f


def free_space(folder: Path) -> tuple[int, int]:
    """(bytes this user may still write, size of the file system) for the file system holding `folder`."""
    st = os.statvfs(folder)
    return st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize


def space_margin(total: int) -> int:
    """The free space a copy leaves on a file system of `total` bytes (SPACE_MARGIN_TEXT)."""
    return max(SPACE_MARGIN_BYTES, int(total * SPACE_MARGIN_FRACTION))


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


class SpaceGuard:
    """Counts the bytes written into `folder` and raises NoSpace once its file system has less than the
    margin free, so that an endless source stops with a margin left instead of at a full disk. The first
    look comes after SPACE_CHECK_BYTES: a small input always fits, even on a nearly full disk."""

    def __init__(self, folder: Path, doing: str, setting: str = "TMPDIR"):
        self.folder, self.doing, self.setting = folder, doing, setting
        self.written = 0
        self._next_check = SPACE_CHECK_BYTES

    def wrote(self, n: int) -> None:
        self.written += n
        if self.written >= self._next_check:
            self._next_check = self.written + SPACE_CHECK_BYTES
            self.check()

    def watch(self, chunks: Iterable[_Chunk], itemsize: int = 1) -> Iterator[_Chunk]:
        """`chunks` passed through, each counted as written (len(chunk) x itemsize bytes) after its use."""
        for chunk in chunks:
            yield chunk
            self.wrote(len(chunk) * itemsize)

    def check(self) -> None:
        try:
            free, total = free_space(self.folder)
        except OSError:  # a file system that cannot tell: the write itself will say if it is full
            return
        margin = space_margin(total)
        if free < margin:
            raise NoSpace(
                f"stopped {self.doing} in {self.folder} after {_size(self.written)}: only {_size(free)} is "
                f"free there and charrnn leaves {_size(margin)} free ({SPACE_MARGIN_TEXT}); set "
                f"{self.setting} to a folder with more free space"
            )
