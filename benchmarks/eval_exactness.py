"""How close parallel-stream scoring comes to one sequential pass over the validation text.

    python benchmarks/eval_exactness.py CHECKPOINT     # e.g. checkpoints/tinyshakespeare

Scores tiny-shakespeare's validation text (last 10%) with the checkpoint three ways: 64 streams with the
default warm-up, 64 streams from blank states, and a single stream (the exact sequential answer).
"""

from __future__ import annotations

import argparse
import time

from common import machine, shakespeare, table

from charrnn.checkpoint import load_checkpoint, model_from_checkpoint
from charrnn.corpus import load_text_file
from charrnn.evaluate import WARMUP_CHARS, score_ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="a checkpoint trained on tiny-shakespeare (.pt or run folder)")
    args = parser.parse_args()
    model, _ = model_from_checkpoint(load_checkpoint(args.checkpoint))
    _, val = load_text_file(shakespeare()).split(0.1)
    rows = []
    for streams, warmup in ((64, WARMUP_CHARS), (64, 0), (1, 0)):
        start = time.perf_counter()
        score = score_ids(model, val, max_streams=streams, warmup=warmup)
        rows.append(
            [streams, warmup, f"{score.chars:,}", f"{score.nats:.5f}", f"{time.perf_counter() - start:.1f}"]
        )
    print(machine())
    print(table(["streams", "warm-up chars", "characters scored", "nats/char", "seconds"], rows))


if __name__ == "__main__":
    main()
