"""Item mode's speed against plain batched sampling of the same model, same run; and how many items are new.

    python benchmarks/item_speed.py [--train-seconds 120]

Trains a model on the `python-names` corpus (about 8,000 names of the Python standard library, one per
line; built offline) for --train-seconds with the default settings, then, alone on the machine:
  - plain: `--num-samples 32 --length 500` (the engine's batched sampler), characters per second;
  - items: `--items 1000`, with no filter and with `--unique --novel`: characters of the kept items (each
    with its delimiter) per second, and the share of the time spent in the corpus check;
  - the share of generated names that are new (not a whole line of the corpus), by temperature.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from common import machine, table

import charrnn
from charrnn.engine import Engine, Sampling
from charrnn.items import ItemFilters, ItemRun, corpus_matcher
from charrnn.sample import SamplingConfig, samples


def timed_matcher(matcher, spent: list[float]):
    """The matcher with its time counted into spent[0]."""

    class Timed:
        def whole_items(self, items):
            t = time.perf_counter()
            try:
                return matcher.whole_items(items)
            finally:
                spent[0] += time.perf_counter() - t

        def longest_overlaps(self, items):
            t = time.perf_counter()
            try:
                return matcher.longest_overlaps(items)
            finally:
                spent[0] += time.perf_counter() - t

    return Timed()


def plain_speed(engine: Engine, temperature: float) -> float:
    config = SamplingConfig(length=500, temperature=temperature, seed=1, num_samples=32)
    start = time.perf_counter()
    for _ in samples(engine, "\n", config):
        pass
    return 32 * 500 / (time.perf_counter() - start)


def item_speed(
    engine: Engine, temperature: float, filters: ItemFilters, matcher=None
) -> tuple[float, float, str]:
    spent = [0.0]
    timed = timed_matcher(matcher, spent) if matcher is not None else None
    start = time.perf_counter()
    run = ItemRun(engine, 1000, sampling=Sampling(temperature), seed=1, filters=filters, matcher=timed)
    chars = sum(item.symbols for item in run)
    elapsed = time.perf_counter() - start
    return chars / elapsed, spent[0] / elapsed, run.counts.summary()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-seconds", type=float, default=120)
    parser.add_argument("--temperature", type=float, default=0.8)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="charrnn-items-"))
    result = charrnn.train("python-names", max_time=args.train_seconds, out=folder / "run", quiet=True)
    model = charrnn.load(folder / "run", device="cpu")
    print(
        f"trained {result.progress.step} steps in {args.train_seconds:.0f} s at {result.chars_per_sec:,.0f} "
        f"chars/s: best validation {result.progress.best_val:.3f} nats/char",
        flush=True,
    )
    engine = model.engine
    matcher = corpus_matcher(model.checkpoint, "\n")
    matcher.whole_items(["warm"])  # map the index before timing
    t = args.temperature
    plain = plain_speed(engine, t)
    bare_items, _, bare_summary = item_speed(engine, t, ItemFilters())
    filtered, share, summary = item_speed(engine, t, ItemFilters(unique=True, novel=True), matcher)
    rows = [
        ["--num-samples 32 -n 500", f"{plain:,.0f}", "1.00", "-", ""],
        ["--items 1000", f"{bare_items:,.0f}", f"{bare_items / plain:.2f}", "-", bare_summary],
        [
            "--items 1000 --unique --novel",
            f"{filtered:,.0f}",
            f"{filtered / plain:.2f}",
            f"{share:.1%}",
            summary,
        ],
    ]
    print()
    print(machine())
    print(f"temperature {t}")
    print(table(["command", "chars/s", "vs plain", "corpus check time", "counts"], rows))

    corpus_lines = []
    share_rows = []
    for temperature in (0.5, 0.8, 1.0):
        run = ItemRun(engine, 1000, sampling=Sampling(temperature), seed=2)
        items = [item.text for item in run]
        whole = matcher.whole_items(items)
        distinct = len(set(items))
        new = sum(1 for w in whole if not w)
        share_rows.append(
            [temperature, len(items), f"{new / len(items):.1%}", f"{distinct / len(items):.1%}"]
        )
        corpus_lines.append(items[:8])
    print()
    print(table(["temperature", "names", "new (not a line of the corpus)", "distinct"], share_rows))
    for temperature, first in zip((0.5, 0.8, 1.0), corpus_lines, strict=True):
        print(f"T={temperature}: " + " ".join(first))


if __name__ == "__main__":
    torch.set_num_threads(torch.get_num_threads())
    main()
