"""What int8 weights cost in loss: a trained checkpoint scored on tiny-shakespeare's validation text in
float32 (fused and stepped) and with int8 recurrent weights (stepped, as `sample --quantize int8` runs).

    python benchmarks/quantize_cost.py CHECKPOINT

Also the mean KL divergence from the float32 next-character distribution to the int8 one over the same
positions, which bounds how far int8 samples can drift in distribution.
"""

from __future__ import annotations

import argparse
import time

import torch
from common import machine, shakespeare, table

from charrnn.checkpoint import load_checkpoint, model_from_checkpoint
from charrnn.corpus import load_text_file
from charrnn.evaluate import score_ids
from charrnn.quantize import Int8Stepper, SteppedModel
from charrnn.stepper import Stepper


@torch.inference_mode()
def mean_kl(model, ids: torch.Tensor, streams: int = 64, length: int = 2000) -> float:
    """KL(float32 || int8) of the next-character distributions, averaged over streams x length positions."""
    starts = torch.linspace(0, ids.numel() - length - 1, streams).long()
    x = torch.stack([ids[s : s + length] for s in starts]).long()
    exact, int8 = Stepper(model), Int8Stepper(model)
    a = exact.split_state(model.init_state(streams))
    b = int8.split_state(model.init_state(streams))
    total = 0.0
    for t in range(length):
        p = torch.log_softmax(exact.step(x[:, t], a), -1)
        q = torch.log_softmax(int8.step(x[:, t], b), -1)
        total += float((p.exp() * (p - q)).sum(-1).mean())
    return total / length


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    args = parser.parse_args()
    blob = load_checkpoint(args.checkpoint)
    model, vocab = model_from_checkpoint(blob)
    corpus = load_text_file(shakespeare())
    _, val = corpus.split(0.1)
    rows = []
    for name, scorer in (
        ("float32, fused (evaluate)", model),
        ("float32, stepped (sample)", SteppedModel(model, Stepper(model))),
        ("int8, stepped (sample --quantize int8)", SteppedModel(model, Int8Stepper(model))),
    ):
        start = time.perf_counter()
        score = score_ids(scorer, val)
        rows.append([name, f"{score.nats:.5f}", f"{score.bpc:.4f}", f"{time.perf_counter() - start:.1f}"])
        print(rows[-1], flush=True)
    kl = mean_kl(model, val)
    cfg = model.config
    print()
    print(machine())
    print(f"{blob.path}: {cfg.cell} {cfg.layers}x{cfg.hidden}; mean KL(float32 || int8) = {kl:.5f} nats")
    print(table(["weights", "validation nats/char", "bits/char", "scoring s"], rows))


if __name__ == "__main__":
    main()
