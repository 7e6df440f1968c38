"""How far back the gradient reaches in a vanilla RNN, an LSTM, a GRU and a peephole LSTM.

    python benchmarks/grad_reach.py --budget 1m

Trains each cell on tiny-shakespeare with `--log-grad-norms` (default settings otherwise, 64-character
windows) and prints ||dL_T / dx_{T-d}||, the gradient of the loss on a window's last character with respect
to the input d steps earlier, relative to d = 0, at the first step (untrained) and at the end of the budget.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from common import REPO, machine, shakespeare, table

from charrnn.diagnostics import summarise

CELLS = ("rnn", "lstm", "gru", "peephole-lstm")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", default="1m")
    parser.add_argument("--eval-every", default="200")
    args = parser.parse_args()
    rows, distances = [], None
    for cell in CELLS:
        with tempfile.TemporaryDirectory() as out:
            command = [sys.executable, "-m", "charrnn", "train", str(shakespeare()), "--cell", cell]
            command += ["--max-time", args.budget, "--eval-every", args.eval_every, "--log-grad-norms"]
            subprocess.run([*command, "--out", out, "--quiet"], check=True, cwd=REPO)
            lines = [json.loads(x) for x in (Path(out) / "grad_norms.jsonl").read_text().splitlines()]
            metrics = [json.loads(x) for x in (Path(out) / "metrics.jsonl").read_text().splitlines()]
        best = min(m["val_loss"] for m in metrics)
        for label, line in (("untrained", lines[0]), (f"step {lines[-1]['step']}", lines[-1])):
            shown = summarise(line["norms"])
            distances = [d for d, _ in shown]
            val = f"{best:.3f}" if label != "untrained" else ""
            rows.append([cell, label, val, *(f"{r:.1e}" for _, r in shown)])
        print(rows[-1], flush=True)
    print()
    print(machine(), f"budget {args.budget}")
    print(table(["cell", "when", "best val nats", *(f"d={d}" for d in distances)], rows))


if __name__ == "__main__":
    main()
