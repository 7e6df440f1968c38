"""Dynamic evaluation against static scoring: a checkpoint on tiny-shakespeare's validation text and on
texts of other kinds, for a few step sizes.

    python benchmarks/dynamic_eval.py CHECKPOINT [OTHER_TEXT ...] [--lrs 1e-4,2e-4,5e-4]

Static is `evaluate`'s score; dynamic is `evaluate --dynamic` (dynamic.py) with the given step size and the
default segment length. Characters outside the model's vocabulary are removed from the other texts first,
as `evaluate` does.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from common import machine, shakespeare, table

from charrnn.checkpoint import load_checkpoint, model_from_checkpoint
from charrnn.config import DYNAMIC_SEGMENT
from charrnn.corpus import load_text_file
from charrnn.dynamic import DynamicConfig, dynamic_score
from charrnn.evaluate import score_ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("others", nargs="*", help="texts of another kind")
    parser.add_argument("--lrs", default="1e-4,2e-4,5e-4")
    parser.add_argument("--segment", type=int, default=DYNAMIC_SEGMENT)
    args = parser.parse_args()
    model, vocab = model_from_checkpoint(load_checkpoint(args.checkpoint))
    texts = {"tiny-shakespeare validation": load_text_file(shakespeare()).split(0.1)[1]}
    for other in args.others:
        raw = Path(other).read_text(encoding="utf-8", errors="replace")
        texts[Path(other).name] = vocab.encode("".join(c for c in raw if c in vocab))
    rows = []
    for name, ids in texts.items():
        static = score_ids(model, ids)
        for lr in (float(x) for x in args.lrs.split(",")):
            start = time.perf_counter()
            dynamic = dynamic_score(model, ids, "cpu", DynamicConfig(lr=lr, segment=args.segment))
            gain = static.nats - dynamic.nats
            seconds = time.perf_counter() - start
            rows.append([name, f"{ids.numel():,}", f"{lr:g}", f"{static.nats:.4f}", f"{dynamic.nats:.4f}",
                         f"{gain:+.4f}", f"{seconds:.0f}"])  # fmt: skip
            print(rows[-1], flush=True)
    print()
    print(machine(), "|", args.checkpoint, "| segment", args.segment)
    print(table(["text", "chars", "lr", "static nats", "dynamic nats", "gain", "dynamic s"], rows))


if __name__ == "__main__":
    main()
