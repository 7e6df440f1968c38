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

The one-step functions are plain differentiable tensor code: scheduled sampling steps through them with
gradients, and they are the reference the peephole layer's hand-written backward is tested against. (The
sampler's stepper does the same arithmetic in place, on weights prepared once, for speed.)
"""

from __future__ import annotations

import math

import torch
from torch import nn

FUSED_CELLS = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}
CELLS = ("lstm", "gru", "rnn", "peephole-lstm")


def has_cell_state(cell: str) -> bool:
    """LSTMs carry (h, c); GRUs and RNNs carry h alone."""
    return cell in ("lstm", "peephole-lstm")


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
    if has_cell_state(cell):
        h, c = state
        return lstm_step(gates_x, h, c, w_hh_t, b_hh, peephole)
    if cell == "gru":
        return gru_step(gates_x, state, w_hh_t, b_hh)
    return rnn_step(gates_x, state, w_hh_t, b_hh)


class PeepholeSequence(torch.autograd.Function):
    """The peephole LSTM over a whole window with a hand-written backward pass.

    No fused kernel has peepholes, so the time loop is Python either way; writing the backward by hand keeps
    autograd from recording a dozen nodes per step, and gathers the weight gradients of all T steps into one
    matrix product each. Measured 1.3-8x faster than letting autograd differentiate the stepped loop
    (BENCHMARKS.md); tests/test_cells.py checks it against finite differences and the stepped cell.

    Inputs: gates_x (N, T, 4H) = x @ W_ih^T + b_ih; h0, c0 (N, H); w_hh (4H, H); b_hh (4H,); peephole (3, H).
    Outputs: out (N, T, H), h_T (N, H), c_T (N, H).
    """

    @staticmethod
    def forward(ctx, gates_x, h0, c0, w_hh, b_hh, peephole):
        n, t, four_h = gates_x.shape
        size = four_h // 4
        p_i, p_f, p_o = peephole[0], peephole[1], peephole[2]
        w_hh_t = w_hh.t()
        acts = gates_x.new_empty(n, t, 4, size)  # the gate activations i, f, g, o of every step
        cells = gates_x.new_empty(n, t + 1, size)  # c_0 .. c_T
        hs = gates_x.new_empty(n, t + 1, size)  # h_0 .. h_T
        hs[:, 0], cells[:, 0] = h0, c0
        pre = gates_x + b_hh
        for s in range(t):
            c, act = cells[:, s], acts[:, s]
            a = torch.addmm(pre[:, s], hs[:, s], w_hh_t).view(n, 4, size)
            torch.sigmoid(torch.addcmul(a[:, 0], p_i, c), out=act[:, 0])
            torch.sigmoid(torch.addcmul(a[:, 1], p_f, c), out=act[:, 1])
            torch.tanh(a[:, 2], out=act[:, 2])
            c_new = cells[:, s + 1]
            torch.mul(act[:, 1], c, out=c_new).addcmul_(act[:, 0], act[:, 2])
            torch.sigmoid(torch.addcmul(a[:, 3], p_o, c_new), out=act[:, 3])
            torch.mul(act[:, 3], torch.tanh(c_new), out=hs[:, s + 1])
        ctx.save_for_backward(acts, cells, hs, w_hh, peephole)
        return hs[:, 1:].clone(), hs[:, t].clone(), cells[:, t].clone()

    @staticmethod
    def backward(ctx, d_out, d_h_last, d_c_last):
        acts, cells, hs, w_hh, peephole = ctx.saved_tensors
        n, t, _, size = acts.shape
        p_i, p_f, p_o = peephole[0], peephole[1], peephole[2]
        d_pre = acts.new_empty(n, t, 4, size)  # gradient of the gate pre-activations
        dh = d_h_last.clone() if d_h_last is not None else hs.new_zeros(n, size)
        dc = d_c_last.clone() if d_c_last is not None else hs.new_zeros(n, size)
        for s in range(t - 1, -1, -1):
            if d_out is not None:
                dh = dh + d_out[:, s]
            i, f, g, o = acts[:, s].unbind(1)
            c_prev, tanh_c = cells[:, s], torch.tanh(cells[:, s + 1])
            d = d_pre[:, s]
            torch.mul(dh * tanh_c, o * (1 - o), out=d[:, 3])
            dc = dc + dh * o * (1 - tanh_c * tanh_c) + d[:, 3] * p_o
            torch.mul(dc * g, i * (1 - i), out=d[:, 0])
            torch.mul(dc * c_prev, f * (1 - f), out=d[:, 1])
            torch.mul(dc * i, 1 - g * g, out=d[:, 2])
            dc = dc * f + d[:, 0] * p_i + d[:, 1] * p_f
            dh = d.reshape(n, 4 * size) @ w_hh
        flat = d_pre.reshape(n * t, 4 * size)
        d_w_hh = flat.t() @ hs[:, :t].reshape(n * t, size)
        d_peephole = torch.stack(
            [
                (d_pre[:, :, 0] * cells[:, :t]).sum((0, 1)),
                (d_pre[:, :, 1] * cells[:, :t]).sum((0, 1)),
                (d_pre[:, :, 3] * cells[:, 1:]).sum((0, 1)),
            ]
        )
        return d_pre.reshape(n, t, 4 * size), dh, dc, d_w_hh, flat.sum(0), d_peephole


class PeepholeLSTM(nn.Module):
    """A single-layer LSTM with peephole connections (Gers and Schmidhuber): the input and forget gates also
    see c_{t-1}, the output gate c_t, through diagonal weights. No fused kernel has them, so the recurrent
    part runs in PeepholeSequence; the input projection of all T steps is one matrix product. It runs in
    float32 under autocast too. TorchScript and torch.compile of the plain loop were measured no faster."""

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
        n = x.size(0)
        dtype = torch.promote_types(x.dtype, self.weight_ih_l0.dtype)
        with torch.autocast(x.device.type, enabled=False):
            gates_x = nn.functional.linear(x.to(dtype), self.weight_ih_l0, self.bias_ih_l0)
            if state is None:
                h0 = c0 = gates_x.new_zeros(n, self.hidden_size)
            else:
                h0, c0 = state[0][0].to(dtype), state[1][0].to(dtype)
            out, h, c = PeepholeSequence.apply(
                gates_x, h0, c0, self.weight_hh_l0, self.bias_hh_l0, self.peephole_l0
            )
        return out, (h.unsqueeze(0), c.unsqueeze(0))


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
