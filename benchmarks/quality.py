"""Quality per minute: the validation loss `charrnn train` reaches on tiny-shakespeare in a time budget.

    python benchmarks/quality.py --budget 2m                   # the defaults
    python benchmarks/quality.py --budget 10m -- --hidden 384  # any train flags after --

Standard split (last 10% of the characters for validation), scored over the whole validation text. The
budget includes the time spent on evaluations, as `--max-time` does. Prints the final and best validation
loss in nats per character (and bits per character), the steps and epochs reached and the training speed.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, machine, shakespeare, table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", default="2m", help="--max-time for the run, e.g. 2m, 10m, 30m")
    parser.add_argument("flags", nargs="*", help="extra `charrnn train` flags (after --)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as out:
        command = [
            sys.executable,
            "-m",
            "charrnn",
            "train",
            str(shakespeare()),
            "--max-time",
            args.budget,
            "--out",
            out,
            "--quiet",
            *args.flags,
        ]
        start = time.perf_counter()
        subprocess.run(command, check=True, cwd=REPO)
        wall = time.perf_counter() - start
        history = [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]
    last = history[-1]
    best = min(h["val_loss"] for h in history)
    row = [
        args.budget,
        " ".join(args.flags) or "(defaults)",
        f"{last['val_loss']:.4f}",
        f"{best:.4f}",
        f"{best / math.log(2):.3f}",
        last["step"],
        f"{last['epoch']:.2f}",
        f"{last['chars_per_sec']:,.0f}",
        f"{wall:.0f}",
    ]
    print(machine())
    print(
        table(
            [
                "budget",
                "flags",
                "final val nats",
                "best val nats",
                "best val bpc",
                "steps",
                "epochs",
                "train chars/s",
                "wall s",
            ],
            [row],
        )
    )


if __name__ == "__main__":
    main()
