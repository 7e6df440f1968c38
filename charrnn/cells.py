"""Recurrent layers and their one-step cell functions. Nothing here knows about text.

Every layer is single-layer and batch-first, and keeps its parameters under PyTorch's names
(`weight_ih_l0`, `weight_hh_l0`, `bias_ih_l0`, `bias_hh_l0`, gate order i, f, g, o for LSTMs and r, z, n for
GRUs), so the fused modules, the peephole LSTM, the sampler's stepper and weight dropout all read them the
same way.

Shapes: N batch rows, T time steps, D input size, H hidden size, G gates (LSTM 4, GRU 3, RNN 1).
    x              (N, T, D)
    out            (N, T, H)
    state          LSTM-like: (h, c), each (1, N, H); GRU and RNN: h, (1, N, H)
    gates_x        (N, G*H)   x_t @ W_ih^T + b_ih for one step
    step state     (N, H) tensors

The one-step functions are plain differentiable tensor code: the peephole layer loops over them, scheduled
sampling steps through them with gradients, and the sampler uses them under inference mode.
"""

from __future__ import annotations

import math

import torch
from torch import nn

FUSED_CELLS = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}
CELLS = ("lstm", "gru", "rnn", "peephole-lstm")
GATES = {"lstm": 4, "gru": 3, "rnn": 1, "peephole-lstm": 4}


def has_cell_state(cell: str) -> bool:
    return GATES[cell] == 4


def lstm_step(gates_x, h, c, w_hh_t, b_hh, peephole=None):
    """One LSTM step; with `peephole` (3, H) the input and forget gates see c_{t-1} and the output gate c_t
    (Gers and Schmidhuber's diagonal peephole connections)."""
    gates = torch.addmm(gates_x + b_hh, h, w_hh_t)
    i, f, g, o = gates.chunk(4, dim=1)
    if peephole is not None:
        i = i + peephole[0] * c
        f = f + peephole[1] * c
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    if peephole is not None:
        o = o + peephole[2] * c
    h = torch.sigmoid(o) * torch.tanh(c)
    return h, c


def gru_step(gates_x, h, w_hh_t, b_hh):
    """One GRU step as PyTorch defines it: the reset gate scales the recurrent part of the candidate, bias
    included."""
    hidden_part = torch.addmm(b_hh, h, w_hh_t)
    i_r, i_z, i_n = gates_x.chunk(3, dim=1)
    h_r, h_z, h_n = hidden_part.chunk(3, dim=1)
    r = torch.sigmoid(i_r + h_r)
    z = torch.sigmoid(i_z + h_z)
    n = torch.tanh(i_n + r * h_n)
    return n + z * (h - n)  # (1 - z) * n + z * h


def rnn_step(gates_x, h, w_hh_t, b_hh):
    return torch.tanh(torch.addmm(gates_x + b_hh, h, w_hh_t))


def cell_step(cell: str, gates_x, state, w_hh, b_hh, peephole=None):
    """Advance one step. `w_hh` is the (G*H, H) recurrent matrix as stored; returns the new step state."""
    w_hh_t = w_hh.t()
    if cell in ("lstm", "peephole-lstm"):
        h, c = state
        return lstm_step(gates_x, h, c, w_hh_t, b_hh, peephole)
    if cell == "gru":
        return gru_step(gates_x, state, w_hh_t, b_hh)
    return rnn_step(gates_x, state, w_hh_t, b_hh)


class PeepholeLSTM(nn.Module):
    """A single-layer LSTM with peephole connections, stepped in a Python loop (no fused kernel has them).

    The input projection of all T steps is one matrix product; only the recurrent part is stepped.
    TorchScript and torch.compile of the loop were measured no faster on CPUs (BENCHMARKS.md).
    """

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.hidden_size = hidden_size
        self.weight_ih_l0 = nn.Parameter(torch.empty(4 * hidden_size, input_size))
        self.weight_hh_l0 = nn.Parameter(torch.empty(4 * hidden_size, hidden_size))
        self.bias_ih_l0 = nn.Parameter(torch.empty(4 * hidden_size))
        self.bias_hh_l0 = nn.Parameter(torch.empty(4 * hidden_size))
        self.peephole_l0 = nn.Parameter(torch.empty(3, hidden_size))  # i, f, o
        bound = 1 / math.sqrt(hidden_size)  # PyTorch's LSTM initialisation
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def forward(self, x: torch.Tensor, state=None):
        n, t, _ = x.shape
        if state is None:
            zeros = x.new_zeros(n, self.hidden_size)
            h, c = zeros, zeros
        else:
            h, c = state[0][0], state[1][0]
        gates_x = torch.nn.functional.linear(x, self.weight_ih_l0, self.bias_ih_l0)
        w_hh_t = self.weight_hh_l0.t()
        outputs = []
        for step in range(t):
            h, c = lstm_step(gates_x[:, step], h, c, w_hh_t, self.bias_hh_l0, self.peephole_l0)
            outputs.append(h)
        return torch.stack(outputs, dim=1), (h.unsqueeze(0), c.unsqueeze(0))


def make_layer(cell: str, input_size: int, hidden_size: int) -> nn.Module:
    """A single recurrent layer: PyTorch's fused module where one exists, else the stepped peephole LSTM."""
    if cell == "peephole-lstm":
        return PeepholeLSTM(input_size, hidden_size)
    return FUSED_CELLS[cell](input_size, hidden_size, num_layers=1, batch_first=True)


def layer_step(cell: str, layer: nn.Module, x_t: torch.Tensor, state, w_hh: torch.Tensor | None = None):
    """One differentiable step of `layer` on input x_t (N, D); `w_hh` replaces its recurrent matrix (weight
    dropout)."""
    gates_x = torch.nn.functional.linear(x_t, layer.weight_ih_l0, layer.bias_ih_l0)
    w = layer.weight_hh_l0 if w_hh is None else w_hh
    return cell_step(cell, gates_x, state, w, layer.bias_hh_l0, getattr(layer, "peephole_l0", None))
