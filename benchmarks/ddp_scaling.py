"""Data-parallel scaling on this machine: 1 process with 2 threads against 2 ranks with 1 thread each.

    python benchmarks/ddp_scaling.py [--budget 2m] [--hidden 384]

Both train tiny-shakespeare for the same wall-clock budget at the same global batch (16 streams of 64
characters: one process with --batch-size 16, or torchrun with 2 ranks of --batch-size 8, gloo on the
loopback interface), one after the other, never at the same time. Reports the training speed (characters
per second, from the run's summary in metrics.jsonl), the steps done and the best validation loss.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from common import REPO, machine, shakespeare, table


def run(command: list[str], threads: int, out: Path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(REPO)}
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"failed: {' '.join(command)}\n{done.stderr[-3000:]}")
    entries = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    last = entries[-1]
    return {
        "speed": last["chars_per_sec"],
        "steps": last["step"],
        "best": min(e["val_loss"] for e in entries if e["val_loss"] is not None),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", default="2m")
    parser.add_argument("--hidden", default="384")
    args = parser.parse_args()
    corpus = str(shakespeare())
    common = ["train", corpus, "--hidden", args.hidden, "--max-time", args.budget, "--quiet", "--overwrite"]
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        one = Path(folder) / "one"
        single = run(
            [sys.executable, "-m", "charrnn", *common, "--batch-size", "16", "--out", str(one)], 2, one
        )
        rows.append(["1 process x 2 threads, batch 16", *_cells(single)])
        print(rows[-1], flush=True)
        two = Path(folder) / "two"
        torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
        ddp = run([*torchrun, "-m", "charrnn", *common, "--batch-size", "8", "--out", str(two)], 1, two)
        rows.append(["2 ranks x 1 thread, batch 8 each (gloo)", *_cells(ddp)])
        print(rows[-1], flush=True)
    print()
    print(machine())
    print(f"tiny-shakespeare, LSTM 2x{args.hidden}, --max-time {args.budget}, global batch 16 x 64")
    print(table(["set-up", "training chars/s", "steps", "best validation loss"], rows))


def _cells(result: dict) -> list[str]:
    return [f"{result['speed']:,.0f}", f"{result['steps']:,}", f"{result['best']:.4f}"]


if __name__ == "__main__":
    main()
