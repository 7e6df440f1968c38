"""Fine-tuning the bundled model against training from scratch, at the same wall-clock budget.

    python benchmarks/finetune.py                 # every text and budget (about 40 minutes)
    python benchmarks/finetune.py --only shakespeare-100k --budgets 2m
    python benchmarks/finetune.py --lr 0.001,0.002,0.003 --only shakespeare-100k   # the fine-tuning lr sweep

Texts (none of their kinds is in the starter's corpus; all built offline):
- shakespeare-100k: the first 100,000 characters of tiny-shakespeare;
- shakespeare: all of tiny-shakespeare (1 MB, the standard split: its last 10% validates);
- words-100k: an evenly spaced 100 KB selection of Webster's Second word list (Debian `miscfiles`,
  /usr/share/dict/web2), one word per line: a list of names, not prose;
- russian-100k: the first 100 KB of the Russian fortunes (Debian `fortunes-ru`), UTF-8 Cyrillic, trained at
  the byte level in both arms (the starter is byte-level; from scratch with --level byte).
Each run is a subprocess of `charrnn train` run alone, one after the other; the figure is its best
validation loss (nats per character, or per byte for the byte-level arms; on ASCII text the two are the
same) and its training speed. The starter alone is scored on each text's validation part with `charrnn
evaluate`, so the table shows what the fine-tuning bought.
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

CHARRNN = [sys.executable, "-m", "charrnn"]
WEB2 = Path("/usr/share/dict/web2")
RUSSIAN = Path("/usr/share/games/fortunes/ru")
SIZE = 100_000


def build_texts(folder: Path) -> dict[str, tuple[Path, bool]]:
    """name -> (file, byte level in both arms)."""
    texts: dict[str, tuple[Path, bool]] = {}
    full = shakespeare().read_text(encoding="utf-8")
    (folder / "shakespeare-100k.txt").write_text(full[:SIZE], encoding="utf-8")
    texts["shakespeare-100k"] = (folder / "shakespeare-100k.txt", False)
    texts["shakespeare"] = (shakespeare(), False)
    if WEB2.is_file():
        words = WEB2.read_text(encoding="utf-8").split()
        step = max(1, sum(len(w) + 1 for w in words) // SIZE)
        chosen, total = [], 0
        for word in words[::step]:
            if total + len(word) + 1 > SIZE:
                break
            chosen.append(word)
            total += len(word) + 1
        (folder / "words-100k.txt").write_text("\n".join(chosen) + "\n", encoding="utf-8")
        texts["words-100k"] = (folder / "words-100k.txt", False)
    else:
        print(f"skipping words-100k: {WEB2} is missing (apt-get install miscfiles)", file=sys.stderr)
    if RUSSIAN.is_dir():
        data = b"".join(f.read_bytes() for f in sorted(RUSSIAN.iterdir()) if not f.suffix)
        text = data[:SIZE].decode("utf-8", errors="ignore")  # whole characters only
        (folder / "russian-100k.txt").write_text(text, encoding="utf-8")
        texts["russian-100k"] = (folder / "russian-100k.txt", True)
    else:
        print(f"skipping russian-100k: {RUSSIAN} is missing (apt-get install fortunes-ru)", file=sys.stderr)
    return texts


def validation_part(path: Path, folder: Path) -> Path:
    """The last 10% of a text (what `charrnn train` holds out by default), as a file `evaluate` reads."""
    text = path.read_text(encoding="utf-8")
    out = folder / f"{path.stem}.val.txt"
    out.write_text(text[len(text) - int(len(text) * 0.1) :], encoding="utf-8")
    return out


def train(text: Path, out: Path, budget: str, extra: list[str]) -> dict:
    command = [*CHARRNN, "train", str(text), "--max-time", budget, "--out", str(out), "--quiet", *extra]
    started = time.time()
    subprocess.run(command, check=True, cwd=REPO)
    wall = time.time() - started
    info = json.loads(
        subprocess.run(
            [*CHARRNN, "info", str(out), "--json"], check=True, capture_output=True, text=True, cwd=REPO
        ).stdout
    )
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    speed = records[-1]["chars_per_sec"] if records else None
    return {
        "best": info["best_val_loss"],
        "steps": info["steps"],
        "chars_per_sec": speed,
        "wall": wall,
        "hidden": info["hidden"],
        "lr": info["train_config"].get("lr"),
    }


def score(model: str, text: Path) -> float:
    done = subprocess.run(
        [*CHARRNN, "evaluate", model, str(text), "--json"],
        check=True,
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    return json.loads(done.stdout)["nats"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", help="comma-separated text names")
    parser.add_argument("--budgets", help="comma-separated budgets (default: 2m, and 2m,10m for shakespeare)")
    parser.add_argument("--lr", help="comma-separated fine-tuning learning rates to sweep (no scratch arm)")
    parser.add_argument("--init", default="base", help="the model to fine-tune [base]")
    parser.add_argument("--json", type=Path, help="append each result as a JSON line to this file")
    args = parser.parse_args()
    print(f"machine: {machine()}", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="charrnn-finetune-") as tmp:
        folder = Path(tmp)
        texts = build_texts(folder)
        names = args.only.split(",") if args.only else list(texts)
        rows = []
        for name in names:
            path, byte_level = texts[name]
            budgets = (
                args.budgets.split(",")
                if args.budgets
                else (["2m", "10m"] if name == "shakespeare" else ["2m"])
            )
            starter = score(args.init, validation_part(path, folder))
            for budget in budgets:
                arms = (
                    [(f"lr {lr}", ["--init", args.init, "--lr", lr]) for lr in args.lr.split(",")]
                    if args.lr
                    else [
                        ("--init " + args.init, ["--init", args.init]),
                        ("from scratch", ["--level", "byte"] if byte_level else []),
                    ]
                )
                results = {}
                for label, extra in arms:
                    out = folder / f"{name}-{budget}-{len(results)}"
                    results[label] = r = train(path, out, budget, extra)
                    print(
                        f"{name} {budget} {label}: best {r['best']:.4f}, {r['steps']} steps, "
                        f"{r['chars_per_sec']:,.0f} chars/s, {r['hidden']} hidden",
                        file=sys.stderr,
                    )
                    if args.json:
                        with open(args.json, "a") as f:
                            f.write(
                                json.dumps(
                                    {"text": name, "budget": budget, "arm": label, "starter": starter, **r}
                                )
                                + "\n"
                            )
                labels = list(results)
                gain = results[labels[1]]["best"] - results[labels[0]]["best"] if len(labels) == 2 else None
                for label in labels:
                    r = results[label]
                    rows.append(
                        [
                            name,
                            budget,
                            label,
                            f"{r['best']:.4f}",
                            f"{r['steps']:,}",
                            f"{r['chars_per_sec']:,.0f}",
                            f"{starter:.4f}",
                            f"{gain:+.4f}" if gain is not None and label == labels[0] else "",
                        ]
                    )
        print(
            table(
                [
                    "text",
                    "budget",
                    "arm",
                    "best val loss",
                    "steps",
                    "chars/s",
                    "starter alone",
                    "fine-tuned gain",
                ],
                rows,
            )
        )


if __name__ == "__main__":
    main()
