"""One-character-at-a-time inference for generation, on the trained weights.

Calling nn.LSTM with T=1 spends most of its time in kernel set-up (about 2 ms per layer on a CPU), so
generation steps the cells by hand: a few matrix-vector products per layer on weights prepared once.
Layer 0's input projection is folded into a lookup table (embedding @ W_ih^T + biases, V x G*H; for one-hot
input the embedding is the identity), so the first layer costs one table row plus the recurrent product.
Output equals CharRNN.forward to float tolerance (tests/test_stepper.py).

Shapes: N streams, H hidden, V vocabulary, G gates (LSTM 4, GRU 3, RNN 1).
    ids     (N,) integer             the current character of each stream
    state   list of per-layer (N, H) h (and c for LSTMs)
    logits  (N, V)
"""

from __future__ import annotations

import torch

from charrnn.cells import has_cell_state
from charrnn.model import CharRNN, State


class Stepper:
    def __init__(self, model: CharRNN):
        cfg = model.config
        self.cell = cfg.cell
        self.layers = cfg.layers
        layers = model.rnns
        with torch.no_grad():
            first = layers[0]
            w_ih0 = first.weight_ih_l0
            embedding = model.embed.weight if model.embed is not None else None
            table = (embedding @ w_ih0.t() if embedding is not None else w_ih0.t()) + first.bias_ih_l0
            if self.cell != "gru":  # GRU keeps b_hh inside the reset gate's product
                table = table + first.bias_hh_l0
            self.input_table = table.contiguous()
            self.w_ih_t = [None] + [layers[k].weight_ih_l0.t().contiguous() for k in range(1, cfg.layers)]
            self.w_hh_t = [layer.weight_hh_l0.t().contiguous() for layer in layers]
            self.peephole = [getattr(layer, "peephole_l0", None) for layer in layers]
            if self.cell == "gru":
                self.b_ih = [None] + [layers[k].bias_ih_l0.clone() for k in range(1, cfg.layers)]
                self.b_hh = [layer.bias_hh_l0.clone() for layer in layers]
            else:
                self.b_ih = [None] + [
                    layers[k].bias_ih_l0 + layers[k].bias_hh_l0 for k in range(1, cfg.layers)
                ]
            self.w_out_t = model.head.weight.t().contiguous()
            self.b_out = model.head.bias.clone()

    def split_state(self, state: State) -> list:
        """Model state (L, N, H) -> per-layer list the step function updates."""
        if has_cell_state(self.cell):
            h, c = state
            return [(h[k].contiguous(), c[k].contiguous()) for k in range(self.layers)]
        return [state[k].contiguous() for k in range(self.layers)]

    @torch.inference_mode()
    def step(self, ids: torch.Tensor, state: list) -> torch.Tensor:
        """Advance every stream by one character; updates `state` in place and returns the logits."""
        x = None
        for k in range(self.layers):
            gates = self.input_table[ids] if k == 0 else self.input_product(k, x)
            if has_cell_state(self.cell):
                h, c = state[k]
                gates = self.add_recurrent(k, gates, h)
                i, f, g, o = gates.chunk(4, dim=1)
                peep = self.peephole[k]
                if peep is not None:
                    i.addcmul_(peep[0], c)
                    f.addcmul_(peep[1], c)
                c = torch.sigmoid(f).mul_(c).addcmul_(torch.sigmoid(i), torch.tanh(g))
                if peep is not None:
                    o.addcmul_(peep[2], c)
                h = torch.sigmoid(o).mul_(torch.tanh(c))
                state[k] = (h, c)
            elif self.cell == "gru":
                h = state[k]
                hidden_part = self.recurrent_product(k, h)
                i_r, i_z, i_n = gates.chunk(3, dim=1)
                h_r, h_z, h_n = hidden_part.chunk(3, dim=1)
                r = torch.sigmoid(i_r + h_r)
                z = torch.sigmoid(i_z + h_z)
                n = torch.tanh(i_n.addcmul(r, h_n))
                h = n.add_(z * (h - n))  # (1 - z) * n + z * h
                state[k] = h
            else:
                h = torch.tanh(self.add_recurrent(k, gates, state[k]))
                state[k] = h
            x = h
        return torch.addmm(self.b_out, x, self.w_out_t)

    # the matrix products, apart so a subclass can do them in another precision (quantize.py)
    def input_product(self, k: int, x: torch.Tensor) -> torch.Tensor:
        """Layer k > 0: x @ W_ih^T plus the biases folded in at construction."""
        return torch.addmm(self.b_ih[k], x, self.w_ih_t[k])

    def add_recurrent(self, k: int, gates: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """gates + h @ W_hh^T (LSTM-like and RNN layers; their hidden bias is already in `gates`)."""
        return gates.addmm_(h, self.w_hh_t[k])

    def recurrent_product(self, k: int, h: torch.Tensor) -> torch.Tensor:
        """GRU: h @ W_hh^T + b_hh, kept apart for the reset gate."""
        return torch.addmm(self.b_hh[k], h, self.w_hh_t[k])
