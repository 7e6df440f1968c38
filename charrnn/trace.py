"""What the model made of a text, symbol by symbol: the data behind `evaluate --show` and `--html`.

The text is read one symbol at a time through the Stepper (the arithmetic of generation), because the
fused kernels do not return every step's cell state. For each symbol t it records the surprisal of t
given everything before it, the model's top predictions for t before seeing it, and every layer's state
after reading t. The first symbol has no surprisal: nothing predicts it, as in `evaluate`.

A byte-level model reads bytes; its trace is regrouped into characters (surprisal summed over a
character's bytes, predictions those for its first byte, state the one after its last byte).

Shapes: T characters traced, L layers, H hidden units, K predictions kept.
    surprisal   (T,) float64, bits; NaN at t = 0
    top_ids     (T, K) int64, vocabulary ids; top_probs (T, K) float32 (row 0: zeros, nothing predicted)
    states      {"h": (L, T, H)} float32, plus "c" for LSTM-like cells
"""

from __future__ import annotations

import codecs
import math
from dataclasses import dataclass

import numpy as np
import torch

from charrnn.cells import has_cell_state
from charrnn.model import CharRNN
from charrnn.stepper import Stepper
from charrnn.vocab import Vocabulary

TOP_K = 5


@dataclass
class Trace:
    chars: list[str]  # the text as shown, one entry per character
    surprisal: np.ndarray  # (T,) bits
    top_ids: np.ndarray  # (T, K)
    top_probs: np.ndarray  # (T, K)
    states: dict[str, np.ndarray]  # name -> (L, T, H)
    symbols_read: int  # ids fed to the model (bytes at the byte level)
    ids: np.ndarray  # (T,) the id read at each character (its first byte at the byte level)

    @property
    def bits_total(self) -> float:
        return float(np.nansum(self.surprisal))

    @property
    def scored(self) -> int:
        """Symbols with a surprisal: every one read but the first (bytes at the byte level)."""
        return max(0, self.symbols_read - 1)


@torch.inference_mode()
def trace_ids(model: CharRNN, vocab: Vocabulary, ids: torch.Tensor, top_k: int = TOP_K) -> Trace:
    """Step the model over `ids` (1-D, at most a few tens of thousands) from a blank state."""
    model.eval()
    device = next(model.parameters()).device
    n = int(ids.numel())
    cfg = model.config
    k = min(top_k, len(vocab))
    stepper = Stepper(model)
    state = stepper.split_state(model.init_state(1, device))
    names = ["h", "c"] if has_cell_state(cfg.cell) else ["h"]
    states = {name: np.zeros((cfg.layers, n, cfg.hidden), dtype=np.float32) for name in names}
    bits = np.full(n, math.nan)
    top_ids = np.zeros((n, k), dtype=np.int64)
    top_probs = np.zeros((n, k), dtype=np.float32)
    ids = ids.long()
    logits = None
    for t in range(n):
        current = ids[t : t + 1].to(device)
        if logits is not None:  # the prediction made before reading symbol t
            log_probs = torch.log_softmax(logits.float(), dim=-1)[0]
            best = torch.topk(log_probs, k)
            top_ids[t] = best.indices.cpu().numpy()
            top_probs[t] = best.values.exp().cpu().numpy()
            bits[t] = -float(log_probs[current[0]]) / math.log(2)
        logits = stepper.step(current, state)
        for layer, layer_state in enumerate(state):
            parts = layer_state if isinstance(layer_state, tuple) else (layer_state,)
            for name, part in zip(names, parts, strict=True):
                states[name][layer, t] = part[0].float().cpu().numpy()
    if vocab.level == "byte":
        return _group_bytes(ids, bits, top_ids, top_probs, states)
    return Trace(list(vocab.decode(ids)), bits, top_ids, top_probs, states, n, ids.numpy())


def _group_bytes(ids, bits, top_ids, top_probs, states) -> Trace:
    """Regroup a byte trace into characters (see the module docstring). Every byte's surprisal is kept
    in the sum of its character, so the total equals the byte-level total `evaluate` reports."""
    raw = bytes(ids.tolist())
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    chars: list[str] = []
    firsts: list[int] = []
    lasts: list[int] = []
    start = 0
    for t in range(len(raw) + 1):
        piece = decoder.decode(raw[t : t + 1], final=t == len(raw))
        for ch in piece:  # complete characters (an invalid byte comes out as U+FFFD)
            chars.append(ch)
            firsts.append(start)
            lasts.append(min(t, len(raw) - 1))
        if piece:
            start = t + 1
    pairs = zip(firsts, lasts, strict=True)
    summed = np.array([np.nansum(bits[a : b + 1]) if b > 0 else math.nan for a, b in pairs])
    firsts_a, lasts_a = np.array(firsts, dtype=np.int64), np.array(lasts, dtype=np.int64)
    return Trace(
        chars,
        summed,
        top_ids[firsts_a],
        top_probs[firsts_a],
        {name: s[:, lasts_a] for name, s in states.items()},
        len(raw),
        ids.numpy()[firsts_a],
    )
