"""Shared fixtures: tiny texts, tiny models and an isolated cache folder for every test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent

# A short text with structure a tiny model learns within a few hundred steps, plus non-ASCII characters.
SMALL_TEXT = (
    "the cat sat on the mat. the dog sat on the log. "
    "a bird sang in the tree; a fish swam in the sea. "
    "naïve café owners serve crème brûlée — 東京 too!\n"
) * 40


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("CHARRNN_CACHE_DIR", str(cache))
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    return cache


@pytest.fixture
def small_text_file(tmp_path) -> Path:
    path = tmp_path / "small.txt"
    path.write_text(SMALL_TEXT, encoding="utf-8")
    return path


def shakespeare_path() -> Path | None:
    """The shared tiny-shakespeare file, if this machine has it (CI does)."""
    candidates = [os.environ.get("CHARRNN_CORPUS_DIR"), str(REPO.parent / "shared" / "corpora")]
    for folder in candidates:
        if folder and (Path(folder) / "tinyshakespeare.txt").is_file():
            return Path(folder) / "tinyshakespeare.txt"
    return None


TINY_TRAIN_FLAGS = [
    "--hidden",
    "32",
    "--layers",
    "1",
    "--embedding",
    "16",
    "--batch-size",
    "4",
    "--seq-len",
    "16",
    "--max-steps",
    "30",
    "--eval-every",
    "10",
    "--dropout",
    "0",
    "--quiet",
]
