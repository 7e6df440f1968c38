"""Gigabyte corpora in constant memory: encoding speed, peak memory and start-up time of `charrnn train`.

    python benchmarks/big_corpus.py [--ascii-mb 1000] [--utf8-mb 200] [--steps 20]

Builds two test texts in the cache folder ($CHARRNN_CACHE_DIR or ~/.cache/charrnn, under bench/; never in
git), once: a mostly-ASCII text (tiny-shakespeare with every line varied by a counter, repeated to the
size) and a UTF-8 text in several scripts (Latin with accents, Greek, Cyrillic, CJK, emoji). For each it
runs, each in a fresh process and one at a time:

- the encoding alone (`load_corpus` with an empty cache): MB/s and peak resident memory;
- `charrnn train TEXT --max-steps N --quiet` with an empty cache (first run) and again (cached run), under
  /usr/bin/time -v: wall time and peak resident set of the whole process;
- the cached start: launch to the first training step, as the wall time of a run with
  `--max-steps 1 --val-chars 2` (an upper bound: it includes that step, a 2-character evaluation and the
  checkpoint writes);
- `charrnn evaluate` of the whole text with the first run's model, stopped after --eval-seconds (it would
  take hours): its peak resident memory, beside that of evaluating the text's first megabyte.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, machine, shakespeare, table

CHARRNN = [sys.executable, "-m", "charrnn"]

ENCODE_CHILD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[2])
from charrnn.corpus import load_corpus
start = time.perf_counter()
corpus = load_corpus(sys.argv[1])
seconds = time.perf_counter() - start
peak = 0
for line in open("/proc/self/status"):
    if line.startswith("VmHWM:"):
        peak = int(line.split()[1]) * 1024
print(json.dumps({"seconds": seconds, "peak": peak, "chars": len(corpus), "symbols": len(corpus.vocab)}))
"""

SCRIPTS = [
    "Ünïcödé café naïve façade — ",
    "Καλημέρα κόσμε, ",
    "Здравствуй, мир! ",
    "春眠不觉晓，处处闻啼鸟。",
    "こんにちは世界、",
    "안녕하세요 세계 ",
    "🙂🚀🌍✨ ",
]


def bench_folder() -> Path:
    base = os.environ.get("CHARRNN_CACHE_DIR") or str(Path.home() / ".cache" / "charrnn")
    folder = Path(base) / "bench"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def build_text(path: Path, megabytes: int, multilingual: bool) -> Path:
    """Write the test text (about `megabytes` MB) unless it is already there."""
    target = megabytes * 1_000_000
    if path.exists() and abs(path.stat().st_size - target) < 2_000_000:
        return path
    lines = shakespeare().read_text(encoding="utf-8").split("\n")
    tmp = path.with_suffix(".tmp")
    written, round_ = 0, 0
    with open(tmp, "wb") as f:
        while written < target:
            parts = []
            for i, line in enumerate(lines):
                extra = f" {round_}" if i % 7 == 0 else ""
                if multilingual and i % 2 == 0:
                    extra += " " + SCRIPTS[(i + round_) % len(SCRIPTS)]
                parts.append(line + extra)
            block = ("\n".join(parts) + "\n").encode("utf-8")
            f.write(block)
            written += len(block)
            round_ += 1
    tmp.replace(path)
    return path


def time_v(command: list[str], env: dict, allowed: tuple[int, ...] = (0,)) -> tuple[float, int, str]:
    """Run under /usr/bin/time -v: (wall seconds, peak resident bytes of it and its children, stderr)."""
    start = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-v", *command], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode not in allowed:
        sys.exit(f"failed: {' '.join(command)}\n{done.stderr[-2000:]}")
    peak = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)[1]) * 1024
    return wall, peak, done.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ascii-mb", type=int, default=1000)
    parser.add_argument("--utf8-mb", type=int, default=200)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--eval-seconds", type=int, default=30, help="how long to let `evaluate` run")
    args = parser.parse_args()
    folder = bench_folder()
    texts = [
        ("mostly ASCII", build_text(folder / f"ascii-{args.ascii_mb}mb.txt", args.ascii_mb, False)),
        ("multilingual UTF-8", build_text(folder / f"utf8-{args.utf8_mb}mb.txt", args.utf8_mb, True)),
    ]
    rows = []
    for label, path in texts:
        size_mb = path.stat().st_size / 1e6
        with tempfile.TemporaryDirectory(dir=folder) as cache, tempfile.TemporaryDirectory() as runs:
            env = {**os.environ, "CHARRNN_CACHE_DIR": cache, "PYTHONPATH": str(REPO)}
            encoded = json.loads(
                subprocess.run(
                    [sys.executable, "-c", ENCODE_CHILD, str(path), str(REPO)],
                    env=env,
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
            )
            shutil.rmtree(Path(cache) / "tokens")
            train = [*CHARRNN, "train", str(path), "--max-steps", str(args.steps), "--quiet"]
            first = time_v([*train, "--out", f"{runs}/first"], env)
            cached = time_v([*train, "--out", f"{runs}/cached"], env)
            start = time_v(
                [*CHARRNN, "train", str(path), "--max-steps", "1", "--val-chars", "2", "--quiet"]
                + ["--out", f"{runs}/start"],
                env,
            )
            scoring = time_v(
                ["timeout", str(args.eval_seconds), *CHARRNN, "evaluate", f"{runs}/first", str(path)],
                env,
                allowed=(0, 124),
            )
            small = folder / "eval-1mb.txt"
            with open(path, "rb") as f, open(small, "wb") as out:
                out.write(f.read(1_000_000).decode("utf-8", "ignore").encode("utf-8"))
            scoring_small = time_v([*CHARRNN, "evaluate", f"{runs}/first", str(small)], env)
            rows.append(
                [
                    label,
                    f"{size_mb:,.0f} MB",
                    f"{encoded['chars']:,} / {encoded['symbols']:,}",
                    f"{size_mb / encoded['seconds']:,.0f} MB/s ({encoded['seconds']:.1f} s)",
                    f"{encoded['peak'] / 1e6:,.0f} MB",
                    f"{first[0]:.1f} s, {first[1] / 1e6:,.0f} MB",
                    f"{cached[0]:.1f} s, {cached[1] / 1e6:,.0f} MB",
                    f"{start[0]:.1f} s",
                    f"{scoring[1] / 1e6:,.0f} MB (1 MB text: {scoring_small[1] / 1e6:,.0f} MB)",
                ]
            )
            print(rows[-1], flush=True)
    print()
    print(machine())
    print(
        table(
            [
                "text",
                "size",
                "characters / symbols",
                "encoding",
                "encoding peak RSS",
                f"train --max-steps {args.steps}, first run (wall, peak RSS)",
                "cached run (wall, peak RSS)",
                "cached start to step 1 (upper bound)",
                f"evaluate the whole file for {args.eval_seconds} s: peak RSS",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    main()
