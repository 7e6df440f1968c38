"""The engine's step and draw in numpy for a single row on a CPU: the same arithmetic as stepper.Stepper and
engine.choose with a fraction of the per-operation cost.

A one-row step of a small model is a few matrix-vector products and a dozen element-wise operations on
vectors of a few hundred numbers; PyTorch spends several microseconds dispatching each of its ~40
operations, numpy about one. On 2 cores this steps a 2x128 LSTM about 5x and a 2x512 about 1.8x faster
than the PyTorch path at one row (benchmarks/sample_speed.py has the figures). From two rows on the
engine uses the batched PyTorch path: two rows in numpy ran 1.7x faster at 2x128 but 2x slower at 2x512
(numpy's (2, H) products are single-threaded), so only the one-row case is worth a second arithmetic.

LSTM gates are reordered once to (i, f, o, g), so one sigmoid covers three gates and one tanh the last.
Draws invert the cumulative distribution exactly as engine.choose does; rows with top-k, top-p or
alternatives to report use the PyTorch path.

Shapes: H hidden, V vocabulary; state per layer (H,) vectors (h, or (h, c) for LSTMs), logits (V,).
"""

from __future__ import annotations

import numpy as np
import torch

from charrnn.stepper import Stepper

CELLS = ("lstm", "gru", "rnn")


def _reorder(w: np.ndarray) -> np.ndarray:
    """LSTM gate columns (i, f, g, o) -> (i, f, o, g)."""
    i, f, g, o = np.split(w, 4, axis=-1)
    return np.ascontiguousarray(np.concatenate([i, f, o, g], axis=-1))


def _array(t: torch.Tensor | None, lstm: bool) -> np.ndarray | None:
    if t is None:
        return None
    a = t.detach().to(torch.float32).cpu().numpy()
    return _reorder(a) if lstm else np.ascontiguousarray(a)


class NumpyStepper:
    """A float32 Stepper's weights as numpy arrays, and its step for one row."""

    def __init__(self, stepper: Stepper):
        self.cell = stepper.cell
        self.layers = stepper.layers
        lstm = self.cell == "lstm"
        self.lstm = lstm
        self.table = _array(stepper.input_table, lstm)
        self.w_ih = [None] + [_array(w, lstm) for w in stepper.w_ih_t[1:]]
        self.w_hh = [_array(w, lstm) for w in stepper.w_hh_t]
        self.b_ih = [None] + [_array(b, lstm) for b in stepper.b_ih[1:]]
        self.b_hh = [_array(b, False) for b in stepper.b_hh] if self.cell == "gru" else None
        self.w_out = _array(stepper.w_out_t, False)
        self.b_out = _array(stepper.b_out, False)
        self.hidden = self.w_hh[0].shape[0]

    @staticmethod
    def usable(stepper: Stepper, device: torch.device) -> bool:
        """Whether this path computes what `stepper` does: float32 weights, a plain cell, a CPU."""
        return (
            device.type == "cpu"
            and type(stepper) is Stepper
            and stepper.cell in CELLS
            and all(p is None for p in stepper.peephole)
            and stepper.input_table.dtype == torch.float32
        )

    def state_in(self, state: list) -> list:
        """The engine's one-row torch state (per layer (1, H)) as (H,) numpy vectors (copies)."""
        if self.lstm:
            return [(h[0].numpy().copy(), c[0].numpy().copy()) for h, c in state]
        return [s[0].numpy().copy() for s in state]

    def state_out(self, state: list) -> list:
        if self.lstm:
            return [(torch.from_numpy(h[None]), torch.from_numpy(c[None])) for h, c in state]
        return [torch.from_numpy(s[None]) for s in state]

    def step(self, symbol: int, state: list) -> np.ndarray:
        """Advance the row by one symbol (`state` updated in place); the logits (V,). On 1-D vectors: a
        quarter fewer microseconds than (1, H) arrays, which is most of a small model's step."""
        H = self.hidden
        x = None
        for k in range(self.layers):
            gates = self.table[symbol] if k == 0 else x @ self.w_ih[k] + self.b_ih[k]
            if self.lstm:
                h, c = state[k]
                gates = gates + h @ self.w_hh[k]
                s = 1.0 / (1.0 + np.exp(-gates[: 3 * H]))
                c = s[H : 2 * H] * c + s[:H] * np.tanh(gates[3 * H :])
                h = s[2 * H :] * np.tanh(c)
                state[k] = (h, c)
            elif self.cell == "gru":
                h = state[k]
                hidden = h @ self.w_hh[k] + self.b_hh[k]
                rz = 1.0 / (1.0 + np.exp(-(gates[: 2 * H] + hidden[: 2 * H])))
                n = np.tanh(gates[2 * H :] + rz[:H] * hidden[2 * H :])
                h = n + rz[H:] * (h - n)
                state[k] = h
            else:
                h = np.tanh(gates + state[k] @ self.w_hh[k])
                state[k] = h
            x = h
        return x @ self.w_out + self.b_out


def choose(logits: np.ndarray, temperature: float | None, greedy: bool, u: float) -> tuple[int, float]:
    """engine.choose without top-k/top-p for one row: the id drawn at the uniform `u` from
    softmax(logits / temperature) (None: temperature 1), the most likely one if `greedy`; and its
    log-probability under the model (temperature 1)."""
    z = logits - logits.max()
    e = np.exp(z)
    total1 = float(e.sum())
    if greedy:
        symbol = int(z.argmax())
    else:
        if temperature is None:
            cdf = np.cumsum(e)
        else:
            with np.errstate(over="ignore", invalid="ignore"):
                scaled = z / temperature
                cdf = np.cumsum(np.exp(scaled - scaled.max()))
        total = float(cdf[-1])
        symbol = int(np.searchsorted(cdf, min(u * total, total * (1 - 2**-20)), side="right"))
    return symbol, float(z[symbol]) - float(np.log(total1))
