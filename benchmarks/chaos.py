"""The chaos loop at scale: kill training at random moments, resume, and count the loops that end exact.

    python benchmarks/chaos.py [--loops 100] [--kills 10] [--steps 600] [--seed 1]

Each loop trains an LSTM 2x128 (batch 16 x 64, evaluation and two checkpoint saves every 25 steps) on
tiny-shakespeare to --steps, killing it --kills times with a random choice of SIGKILL, SIGTERM and SIGINT
at a random moment (0 to 1.5 s after the run has logged its next evaluation, so inside steps,
evaluations and saves alike), resuming after each kill. A loop counts as identical when every checkpoint
loaded after every kill, metrics.jsonl parsed, and the final weights equal, bit for bit, those of one
uninterrupted run with the same flags (trained once, first).
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import REPO, machine, shakespeare

from charrnn.checkpoint import load_checkpoint
from charrnn.jsonl import read_records

SIGNALS = [signal.SIGKILL, signal.SIGTERM, signal.SIGINT]


def flags(steps: int) -> list[str]:
    return ["--hidden", "128", "--batch-size", "16", "--seq-len", "64", "--max-steps", str(steps)] + [
        "--eval-every",
        "25",
        "--val-chars",
        "20000",
        "-q",
    ]


def train(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "charrnn", "train", str(shakespeare()), *args]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def metrics_size(run: Path) -> int:
    path = run / "metrics.jsonl"
    return path.stat().st_size if path.exists() else 0


def chaos_loop(run: Path, steps: int, kills: int, rng: random.Random) -> tuple[int, bool]:
    """Kill and resume until the run reaches `steps`; (kills made, every check after every kill held)."""
    made, healthy = 0, True
    while True:
        last = run / "last.pt"
        if last.exists() and load_checkpoint(last).progress.step >= steps:
            return made, healthy
        proc = train(
            ["--resume", str(run)] if last.exists() else ["--out", str(run), "--overwrite", *flags(steps)]
        )
        if made < kills:
            before, deadline = metrics_size(run), time.time() + 120
            while proc.poll() is None and metrics_size(run) == before and time.time() < deadline:
                time.sleep(0.01)
            time.sleep(rng.uniform(0, 1.5))
            if proc.poll() is None:
                proc.send_signal(rng.choice(SIGNALS))
                made += 1
        proc.wait()
        try:
            for name in ("best.pt", "last.pt"):
                if (run / name).exists():
                    load_checkpoint(run / name)
            read_records(run / "metrics.jsonl", lambda message: None)
        except Exception:  # noqa: BLE001 - any failure to read counts against the loop
            healthy = False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loops", type=int, default=100)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    identical, kills = 0, []
    with tempfile.TemporaryDirectory() as folder:
        reference = Path(folder) / "reference"
        train(["--out", str(reference), *flags(args.steps)]).wait()
        expected = load_checkpoint(reference / "last.pt").weights
        for loop in range(args.loops):
            run = Path(folder) / f"loop{loop}"
            made, healthy = chaos_loop(run, args.steps, args.kills, rng)
            kills.append(made)
            final = load_checkpoint(run / "last.pt").weights
            same = healthy and all(torch.equal(final[k], v) for k, v in expected.items())
            identical += same
            print(f"loop {loop + 1}: {made} kills, {'identical' if same else 'DIFFERENT'}", flush=True)
    print()
    print(machine())
    print(f"{identical} of {args.loops} loops ended bit-identical ({args.steps} steps each)")
    print(f"{sum(kills)} kills in all, {min(kills)}-{max(kills)} a loop (at most --kills)")


if __name__ == "__main__":
    main()
