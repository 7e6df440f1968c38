"""Where charrnn keeps files outside the project: the cache of downloaded, built and encoded corpora."""

from __future__ import annotations

import os
from pathlib import Path


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
