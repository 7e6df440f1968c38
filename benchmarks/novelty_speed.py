"""`charrnn novelty` on a 100 MB corpus: index build time and peak memory, then 10,000-character queries.

    python benchmarks/novelty_speed.py [--mb 100]

Builds the mostly-ASCII test text of benchmarks/big_corpus.py (tiny-shakespeare, every 7th line varied by a
counter, repeated to the size: a hard case for a suffix array, since every passage recurs ~100 times with
shared prefixes of hundreds of characters) in the cache folder under bench/ (never in git), encodes it
once in a fresh cache, then, each in a fresh process and one at a time:

- the index build alone (`load_index` on the cached token file) under /usr/bin/time -v: seconds and the
  process's peak resident memory;
- `charrnn novelty QUERY CORPUS --json` with the index cached, for two 10,000-character queries: a
  sample-like text (words drawn from the corpus, with ten 300-character passages copied from it) and a
  worst case (10,000 characters copied verbatim, so every position matches thousands of characters): the
  command's wall time (median of 3, Python and torch start-up included), its peak memory, and the time of
  the query alone measured inside a process (median of 3).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from big_corpus import bench_folder, build_text
from common import REPO, machine, median, table

BUILD_CHILD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[2])
from charrnn.corpus import load_corpus
from charrnn.novelty import load_index
corpus = load_corpus(sys.argv[1])
start = time.perf_counter()
index = load_index(corpus.ids.numpy(), corpus.vocab, corpus.token_path, corpus.fingerprint, "bench", print)
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "symbols": len(corpus), "words": int(index.words.size),
                  "index_bytes": index.path.stat().st_size}))
"""

QUERY_CHILD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[3])
from charrnn.corpus import load_corpus
from charrnn.novelty import load_index, novelty
corpus = load_corpus(sys.argv[1])
ids = corpus.ids.numpy()
index = load_index(ids, corpus.vocab, corpus.token_path, corpus.fingerprint, "bench", print)
text = open(sys.argv[2], encoding="utf-8").read()
times = []
for _ in range(3):
    start = time.perf_counter()
    report = novelty(text, ids, corpus.vocab, index)
    times.append(time.perf_counter() - start)
print(json.dumps({"times": times, "report": report.to_dict()}))
"""


def queries(corpus: Path, folder: Path) -> list[tuple[str, Path]]:
    """The two 10,000-character query texts, cut from the corpus's first 5 MB (seeded)."""
    rng = random.Random(12)
    with open(corpus, encoding="utf-8") as f:
        head = f.read(5_000_000)
    words = re.findall(r"\w+", head[:1_000_000])
    parts = []
    for _ in range(10):
        filler = " ".join(rng.choice(words) for _ in range(120))
        parts.append(filler[:700] + " ")
        start = rng.randrange(len(head) - 300)
        parts.append(head[start : start + 300])
    sample_like = "".join(parts)[:10_000]
    start = rng.randrange(len(head) - 10_000)
    copied = head[start : start + 10_000]
    out = []
    for name, text in (("sample-like", sample_like), ("copied verbatim", copied)):
        path = folder / f"novelty-query-{name.split()[0]}.txt"
        path.write_text(text, encoding="utf-8")
        out.append((name, path))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=100)
    args = parser.parse_args()
    folder = bench_folder()
    corpus = build_text(folder / f"ascii-{args.mb}mb.txt", args.mb, False)
    rows = []
    with tempfile.TemporaryDirectory(dir=folder) as cache:
        env = {**os.environ, "CHARRNN_CACHE_DIR": cache, "PYTHONPATH": str(REPO)}
        encode = "import sys; from charrnn.corpus import load_corpus; load_corpus(sys.argv[1])"
        subprocess.run([sys.executable, "-c", encode, str(corpus)], env=env, check=True)
        _, peak, out = _time_v([sys.executable, "-c", BUILD_CHILD, str(corpus), str(REPO)], env)
        built = json.loads(out.strip().splitlines()[-1])
        print(f"build: {built['seconds']:.1f} s, peak RSS {peak / 1e6:,.0f} MB", flush=True)
        for name, query in queries(corpus, folder):
            command = [sys.executable, "-m", "charrnn", "novelty", str(query), str(corpus), "--json"]
            runs = [_time_v(command, env) for _ in range(3)]
            inner = subprocess.run(
                [sys.executable, "-c", QUERY_CHILD, str(corpus), str(query), str(REPO)],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            result = json.loads(inner.stdout.strip().splitlines()[-1])
            report = result["report"]
            rows.append(
                [
                    name,
                    f"{median(result['times']):.2f} s",
                    f"{median([r[0] for r in runs]):.2f} s",
                    f"{max(r[1] for r in runs) / 1e6:,.0f} MB",
                    f"{report['longest']['length']:,}",
                    " / ".join(f"{v['share']:.1%}" for v in report["ngrams"].values()),
                    f"{report['words']['share']:.1%}",
                ]
            )
            print(rows[-1], flush=True)
    print()
    print(machine())
    print(
        f"corpus: {corpus.name}, {corpus.stat().st_size / 1e6:,.0f} MB, {built['symbols']:,} characters, "
        f"{built['words']:,} distinct words; index file {built['index_bytes'] / 1e6:,.0f} MB"
    )
    print(
        table(
            ["index build (once)", "build peak RSS"],
            [[f"{built['seconds']:.1f} s", f"{peak / 1e6:,.0f} MB"]],
        )
    )
    print()
    print(
        table(
            [
                "10,000-char query",
                "query alone",
                "`charrnn novelty` wall (cached index)",
                "peak RSS",
                "longest",
                "10/20/50-grams found",
                "words found",
            ],
            rows,
        )
    )


def _time_v(command: list[str], env: dict) -> tuple[float, int, str]:
    """Run under /usr/bin/time -v: (wall seconds, peak resident bytes, stdout)."""
    start = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-v", *command], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode:
        sys.exit(f"failed: {' '.join(command)}\n{done.stderr[-2000:]}")
    peak = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)[1]) * 1024
    return wall, peak, done.stdout


if __name__ == "__main__":
    main()
