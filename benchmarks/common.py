"""Shared helpers for the benchmarks: the corpus location, machine description, result tables."""

from __future__ import annotations

import os
import platform
import statistics
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def shakespeare() -> Path:
    """The shared tiny-shakespeare file ($CHARRNN_CORPUS_DIR, else ../shared/corpora beside the repo)."""
    for folder in (os.environ.get("CHARRNN_CORPUS_DIR"), REPO.parent / "shared" / "corpora"):
        if folder and (Path(folder) / "tinyshakespeare.txt").is_file():
            return Path(folder) / "tinyshakespeare.txt"
    sys.exit("benchmarks need tinyshakespeare.txt: set CHARRNN_CORPUS_DIR to the folder that holds it")


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), cpu)
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"


def median(values: list[float]) -> float:
    return statistics.median(values)


def table(headers: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
