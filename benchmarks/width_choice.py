"""Which width wins a time budget on this machine, and does the automatic choice find it?

    python benchmarks/width_choice.py                       # the full grid (about 2.5 hours here)
    python benchmarks/width_choice.py --budgets 2m --threads 2 --widths 128,256,auto
    python benchmarks/width_choice.py --report results.jsonl  # the table from earlier runs

Each arm is one `charrnn train tinyshakespeare.txt --max-time B --threads T` run, alone, one after the
other: an explicit width (`--hidden W` with the learning rate the automatic settings give that width),
or `auto` (no width: the run measures this machine's speed and chooses; the cached speeds are deleted
first, so each automatic run pays for its measuring, unless --keep-speeds). Every run is appended to a
JSON-lines file as soon as it ends (so a long grid can be stopped and reported), with its validation
history. `benchmarks/width_curves.py` fits `charrnn.width_choice.CURVES` to those files. The table
says, per budget and thread count, each width's best validation loss and speed, and how far the
automatic choice landed from the best explicit width.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, machine, shakespeare, table

from charrnn.config import auto_settings
from charrnn.paths import cache_dir

CHARRNN = [sys.executable, "-m", "charrnn"]
DEFAULT_WIDTHS = "128,256,384,512,768,auto"


def run_arm(budget: str, threads: int, width: str, keep_speeds: bool = False) -> dict:
    """One training run; its best validation loss, speed, steps and validation history."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "run"
        flags = ["--max-time", budget, "--threads", str(threads), "--out", str(out)]
        if width != "auto":
            lr = auto_settings(1_000_000, 600.0, hidden=int(width))["lr"]
            flags += ["--hidden", width, "--lr", str(lr), "--quiet"]
        elif not keep_speeds:  # each automatic run measures (and pays for it), as a first run does
            (cache_dir() / "speeds.json").unlink(missing_ok=True)
        started = time.time()
        done = subprocess.run(
            [*CHARRNN, "train", str(shakespeare()), *flags], cwd=REPO, capture_output=True, text=True
        )
        wall = time.time() - started
        if done.returncode != 0:
            sys.exit(f"the run failed:\n{done.stderr[-2000:]}")
        info = json.loads(
            subprocess.run(
                [*CHARRNN, "info", str(out), "--json"], check=True, capture_output=True, text=True, cwd=REPO
            ).stdout
        )
        records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line]
    chars_per_step = info["train_config"]["batch_size"] * info["train_config"]["seq_len"]
    chosen = [line for line in done.stderr.splitlines() if " chosen: " in line]
    return {
        "choice": chosen[0] if chosen else None,
        "budget": budget,
        "threads": threads,
        "width": width,
        "hidden": info["hidden"],
        "lr": info["train_config"]["lr"],
        "best": info["best_val_loss"],
        "steps": records[-1]["step"],  # the last evaluation's: the end of the run (info's is the best's)
        "chars": records[-1]["step"] * chars_per_step,
        "chars_per_sec": records[-1]["chars_per_sec"] if records else None,
        "wall": round(wall, 1),
        "history": [[r["step"] * chars_per_step, r["val_loss"]] for r in records],
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }


def report(results: list[dict]) -> str:
    for r in results:  # files written before the fix recorded the best checkpoint's step
        if r["history"] and r["steps"]:
            chars_per_step = r["chars"] // r["steps"]
            r["chars"] = r["history"][-1][0]
            r["steps"] = r["chars"] // chars_per_step
    rows = []
    for budget in dict.fromkeys(r["budget"] for r in results):
        for threads in sorted({r["threads"] for r in results if r["budget"] == budget}, reverse=True):
            cell = [r for r in results if r["budget"] == budget and r["threads"] == threads]
            explicit = [r for r in cell if r["width"].isdigit()]
            best = min((r["best"] for r in explicit), default=None)
            for r in sorted(cell, key=lambda r: (not r["width"].isdigit(), r["width"], r["hidden"])):
                gap = "" if best is None else f"{r['best'] - best:+.4f}"
                name = str(r["hidden"]) if r["width"].isdigit() else f"{r['width']} (chose {r['hidden']})"
                rows.append(
                    [
                        budget,
                        threads,
                        name,
                        f"{r['best']:.4f}",
                        gap,
                        f"{r['chars_per_sec']:,.0f}",
                        f"{r['chars'] / 1e6:.2f}M",
                        r["steps"],
                    ]
                )
    headers = ["budget", "threads", "width", "best val nats", "vs best width", "chars/s", "chars", "steps"]
    return table(headers, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", default="2m,10m")
    parser.add_argument("--threads", default="2,1")
    parser.add_argument("--widths", default=DEFAULT_WIDTHS, help="comma-separated widths and/or 'auto'")
    parser.add_argument("--results", type=Path, default=Path("width_choice.jsonl"), help="append runs here")
    parser.add_argument("--report", type=Path, help="print the table of this results file and stop")
    parser.add_argument("--pause-file", type=Path, help="before each run, wait while this file exists")
    parser.add_argument(
        "--keep-speeds", action="store_true", help="let automatic runs use speeds cached by earlier runs"
    )
    args = parser.parse_args()
    if args.report:
        results = [json.loads(line) for line in args.report.read_text().splitlines() if line.strip()]
        print(results[0]["machine"] if results else machine())
        print(report(results))
        return
    for budget in args.budgets.split(","):
        for threads in (int(t) for t in args.threads.split(",")):
            for width in args.widths.split(","):
                while args.pause_file and args.pause_file.exists():  # lets other work use the CPU
                    time.sleep(5)
                result = run_arm(budget, threads, width, args.keep_speeds)
                with args.results.open("a") as file:
                    file.write(json.dumps(result) + "\n")
                print(
                    f"{budget} threads {threads} width {width}: best {result['best']:.4f}, "
                    f"{result['chars_per_sec']:,.0f} chars/s, hidden {result['hidden']}",
                    file=sys.stderr,
                    flush=True,
                )
    results = [json.loads(line) for line in args.results.read_text().splitlines() if line.strip()]
    print(machine())
    print(report(results))


if __name__ == "__main__":
    main()
