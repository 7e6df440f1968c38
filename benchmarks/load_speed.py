"""Corpus loading: a 100 MB text encoded at disk speed, without Python lists, and cached for the next run.

    python benchmarks/load_speed.py [--mb 100]

Builds a test text in a temporary folder (tiny-shakespeare repeated; and a non-ASCII variant with one
accented line in every 50), then in a fresh process for each case measures the wall time and the peak
memory added by: charrnn's load (cold cache), charrnn's load again (warm cache), and the naive reference
(decode, then a Python list of ids via a dict lookup per character).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from common import REPO, machine, shakespeare, table

CHILD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[3])
import torch
def rss(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024
from charrnn.corpus import load_text_file
base = rss("VmRSS:")
start = time.perf_counter()
if sys.argv[1] == "naive":
    text = open(sys.argv[2], encoding="utf-8").read()
    stoi = {c: i for i, c in enumerate(sorted(set(text)))}
    ids = [stoi[c] for c in text]
    n = len(ids)
else:
    n = len(load_text_file(sys.argv[2]).ids)
print(json.dumps({"seconds": time.perf_counter() - start, "peak": rss("VmHWM:") - base, "chars": n}))
"""


def run(case: str, path: Path, cache: str) -> dict:
    env = {"CHARRNN_CACHE_DIR": cache, "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, case, str(path), str(REPO)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=100)
    args = parser.parse_args()
    source = shakespeare().read_text(encoding="utf-8")
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        ascii_path = Path(folder) / "ascii.txt"
        repeats = args.mb * 1_000_000 // len(source) + 1
        ascii_path.write_text(source * repeats, encoding="utf-8")
        accented = "\n".join(
            line + (" — café, naïve, 東京" if i % 50 == 0 else "")
            for i, line in enumerate(source.split("\n"))
        )
        unicode_path = Path(folder) / "unicode.txt"
        unicode_path.write_text(accented * repeats, encoding="utf-8")
        for label, path in (("ASCII", ascii_path), ("non-ASCII", unicode_path)):
            size = path.stat().st_size / 1e6
            cache = tempfile.mkdtemp(dir=folder)
            for case, name in (
                ("charrnn", "charrnn, cold cache"),
                ("charrnn", "charrnn, warm cache"),
                ("naive", "Python list (reference)"),
            ):
                result = run(case, path, cache)
                rows.append(
                    [
                        label,
                        f"{size:.0f} MB",
                        name,
                        f"{result['seconds']:.2f}",
                        f"{result['peak'] / 1e6:,.0f}",
                        f"{result['chars']:,}",
                    ]
                )
                print(rows[-1], flush=True)
    print()
    print(machine())
    print(table(["text", "size", "method", "seconds", "peak extra memory (MB)", "characters"], rows))


if __name__ == "__main__":
    main()
