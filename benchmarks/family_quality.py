"""The recurrent family at a fixed budget: validation loss and speed of every cell, input and dropout mode.

    python benchmarks/family_quality.py --budget 2m              # every variant below, one after another
    python benchmarks/family_quality.py --budget 2m --only gru   # the variants whose name contains "gru"

Each variant is `charrnn train tinyshakespeare.txt --max-time BUDGET` with the default settings plus its
flags (standard split, whole validation text). Speed is training characters per second relative to the
fused LSTM with the same defaults (the first row), measured in the same run of this script.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from common import REPO, machine, shakespeare, table

VARIANTS = {
    "lstm (fused, standard dropout)": [],
    "lstm, no weight decay": ["--weight-decay", "0"],
    "gru": ["--cell", "gru"],
    "rnn (vanilla tanh)": ["--cell", "rnn"],
    "peephole-lstm": ["--cell", "peephole-lstm"],
    "lstm, locked dropout": ["--dropout-mode", "locked"],
    "lstm, variational dropout": ["--dropout-mode", "variational"],
    "lstm, one-hot input": ["--input", "onehot"],
    "lstm, tied weights": ["--weight-tying"],
    "lstm, embedding dropout 0.1": ["--embedding-dropout", "0.1"],
    "lstm, scheduled sampling 0:0.25": ["--scheduled-sampling", "0:0.25"],
}


def run(budget: str, flags: list[str]) -> list[dict]:
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-m", "charrnn", "train", str(shakespeare()), "--max-time", budget]
        subprocess.run([*command, "--out", out, "--quiet", *flags], check=True, cwd=REPO)
        return [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", default="2m")
    parser.add_argument("--only", default="", help="run only the variants whose name contains this")
    args = parser.parse_args()
    rows, reference = [], None
    for name, flags in VARIANTS.items():
        if args.only not in name and not (reference is None and not flags):
            continue
        history = run(args.budget, flags)
        best = min(h["val_loss"] for h in history)
        speed = history[-1]["chars_per_sec"]
        reference = reference or speed
        last = history[-1]
        rows.append(
            [name, " ".join(flags) or "(defaults)", f"{best:.4f}", f"{last['train_loss']:.3f}", last["step"],
             f"{speed:,.0f}", f"{speed / reference:.2f}"]
        )  # fmt: skip
        print(rows[-1], flush=True)
    print()
    print(machine(), f"budget {args.budget}")
    headers = [
        "variant",
        "flags",
        "best val nats",
        "last train loss",
        "steps",
        "train chars/s",
        "speed vs lstm",
    ]
    print(table(headers, rows))


if __name__ == "__main__":
    main()
