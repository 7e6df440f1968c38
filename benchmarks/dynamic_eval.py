"""Dynamic evaluation against static scoring: a checkpoint on tiny-shakespeare's validation text and on
texts of other kinds, for a few step sizes.

    python benchmarks/dynamic_eval.py CHECKPOINT [OTHER_TEXT ...] [--lrs 1e-4,2e-4,5e-4]
    python benchmarks/dynamic_eval.py CHECKPOINT --lrs 5e-4 --segments 20,50,100 --decays 0,1e-3

Static is `evaluate`'s score; dynamic is `evaluate --dynamic` (dynamic.py) for every combination of the
given step sizes, segment lengths and decays (by default the configured segment length and decay).
Characters outside the model's vocabulary are removed from the other texts first, as `evaluate` does.
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

from common import machine, shakespeare, table

from charrnn.checkpoint import load_checkpoint, model_from_checkpoint
from charrnn.config import DYNAMIC_DECAY, DYNAMIC_SEGMENT
from charrnn.corpus import load_text_file
from charrnn.dynamic import DynamicConfig, dynamic_score
from charrnn.evaluate import score_ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("others", nargs="*", help="texts of another kind")
    parser.add_argument("--lrs", default="1e-4,2e-4,5e-4")
    parser.add_argument("--segments", default=str(DYNAMIC_SEGMENT), help="characters per step, comma list")
    parser.add_argument("--decays", default=str(DYNAMIC_DECAY), help="decay per segment, comma list")
    args = parser.parse_args()
    model, vocab = model_from_checkpoint(load_checkpoint(args.checkpoint))
    texts = {"tiny-shakespeare validation": load_text_file(shakespeare()).split(0.1)[1]}
    for other in args.others:
        raw = Path(other).read_text(encoding="utf-8", errors="replace")
        texts[Path(other).name] = vocab.encode("".join(c for c in raw if c in vocab))
    rows = []
    for name, ids in texts.items():
        static = score_ids(model, ids)
        for lr, segment, decay in itertools.product(
            _numbers(args.lrs), [int(x) for x in _numbers(args.segments)], _numbers(args.decays)
        ):
            start = time.perf_counter()
            dynamic = dynamic_score(model, ids, "cpu", DynamicConfig(lr=lr, segment=segment, decay=decay))
            gain = static.nats - dynamic.nats
            seconds = time.perf_counter() - start
            rows.append([name, f"{ids.numel():,}", f"{lr:g}", segment, f"{decay:g}", f"{static.nats:.4f}",
                         f"{dynamic.nats:.4f}", f"{gain:+.4f}", f"{seconds:.0f}"])  # fmt: skip
            print(rows[-1], flush=True)
    print()
    print(machine(), "|", args.checkpoint)
    headers = ["text", "chars", "lr", "segment", "decay", "static nats", "dynamic nats", "gain", "dynamic s"]
    print(table(headers, rows))


def _numbers(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


if __name__ == "__main__":
    main()
