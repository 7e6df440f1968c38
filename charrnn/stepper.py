"""One-character-at-a-time inference for generation, on the trained fused weights.

Calling nn.LSTM with T=1 spends most of its time in kernel set-up (about 2 ms per layer on a CPU), so
generation steps the cells by hand: a few matrix-vector products per layer on weights prepared once.
Layer 0's input projection is folded into a lookup table (embedding @ W_ih^T + biases, V x G*H), so the
first layer costs one table row plus the recurrent product. Output equals CharRNN.forward to float
tolerance (tests/test_stepper.py).

Shapes: N streams, H hidden, V vocabulary, G gates (LSTM 4, GRU 3, RNN 1).
    ids     (N,) integer             the current character of each stream
    state   list of per-layer (N, H) h (and c for LSTM)
    logits  (N, V)
"""

from __future__ import annotations

import torch

from charrnn.model import CharRNN, State


class Stepper:
    def __init__(self, model: CharRNN):
        cfg = model.config
        self.cell = cfg.cell
        self.layers = cfg.layers
        rnn = model.rnn
        with torch.no_grad():
            w_ih0 = rnn.weight_ih_l0
            b_ih0, b_hh0 = rnn.bias_ih_l0, rnn.bias_hh_l0
            table = model.embed.weight @ w_ih0.t() + b_ih0
            if self.cell != "gru":  # GRU keeps b_hh inside the reset gate's product
                table = table + b_hh0
            self.input_table = table.contiguous()
            self.w_ih_t = [None] + [
                getattr(rnn, f"weight_ih_l{k}").t().contiguous() for k in range(1, cfg.layers)
            ]
            self.w_hh_t = [getattr(rnn, f"weight_hh_l{k}").t().contiguous() for k in range(cfg.layers)]
            if self.cell == "gru":
                self.b_ih = [None] + [getattr(rnn, f"bias_ih_l{k}").clone() for k in range(1, cfg.layers)]
                self.b_hh = [getattr(rnn, f"bias_hh_l{k}").clone() for k in range(cfg.layers)]
            else:
                self.b_ih = [None] + [
                    (getattr(rnn, f"bias_ih_l{k}") + getattr(rnn, f"bias_hh_l{k}"))
                    for k in range(1, cfg.layers)
                ]
            self.w_out_t = model.head.weight.t().contiguous()
            self.b_out = model.head.bias.clone()

    def split_state(self, state: State) -> list:
        """Fused-module state (L, N, H) -> per-layer list the step function updates."""
        if self.cell == "lstm":
            h, c = state
            return [(h[k].contiguous(), c[k].contiguous()) for k in range(self.layers)]
        return [state[k].contiguous() for k in range(self.layers)]

    @torch.inference_mode()
    def step(self, ids: torch.Tensor, state: list) -> torch.Tensor:
        """Advance every stream by one character; updates `state` in place and returns the logits."""
        x = None
        for k in range(self.layers):
            gates = self.input_table[ids] if k == 0 else torch.addmm(self.b_ih[k], x, self.w_ih_t[k])
            if self.cell == "lstm":
                h, c = state[k]
                gates.addmm_(h, self.w_hh_t[k])
                i, f, g, o = gates.chunk(4, dim=1)
                c = torch.sigmoid(f).mul_(c).addcmul_(torch.sigmoid(i), torch.tanh(g))
                h = torch.sigmoid(o).mul_(torch.tanh(c))
                state[k] = (h, c)
            elif self.cell == "gru":
                h = state[k]
                hidden_part = torch.addmm(self.b_hh[k], h, self.w_hh_t[k])
                i_r, i_z, i_n = gates.chunk(3, dim=1)
                h_r, h_z, h_n = hidden_part.chunk(3, dim=1)
                r = torch.sigmoid(i_r + h_r)
                z = torch.sigmoid(i_z + h_z)
                n = torch.tanh(i_n.addcmul(r, h_n))
                h = n.add_(z * (h - n))  # (1 - z) * n + z * h
                state[k] = h
            else:
                h = torch.tanh(gates.addmm_(state[k], self.w_hh_t[k]))
                state[k] = h
            x = h
        return torch.addmm(self.b_out, x, self.w_out_t)
