"""The recurrent cells: one step against a hand computation, against PyTorch's fused modules, and the
peephole layer's gradients against finite differences."""

import pytest
import torch
from torch import nn

from charrnn.cells import PeepholeLSTM, cell_step, make_layer


def test_peephole_step_matches_a_hand_computation():
    torch.manual_seed(0)
    n, d, h = 2, 3, 4
    layer = PeepholeLSTM(d, h).double()
    x = torch.randn(n, d, dtype=torch.double)
    h0 = torch.randn(n, h, dtype=torch.double)
    c0 = torch.randn(n, h, dtype=torch.double)
    out, (h1, c1) = layer(x.unsqueeze(1), (h0.unsqueeze(0), c0.unsqueeze(0)))

    # Gers & Schmidhuber, written out gate by gate, element by element.
    w_ih, w_hh = layer.weight_ih_l0.detach(), layer.weight_hh_l0.detach()
    b = (layer.bias_ih_l0 + layer.bias_hh_l0).detach()
    p = layer.peephole_l0.detach()
    sig = lambda v: 1 / (1 + torch.exp(-v))  # noqa: E731
    for row in range(n):
        for j in range(h):
            pre = [w_ih[g * h + j] @ x[row] + w_hh[g * h + j] @ h0[row] + b[g * h + j] for g in range(4)]
            i = sig(pre[0] + p[0, j] * c0[row, j])
            f = sig(pre[1] + p[1, j] * c0[row, j])
            c = f * c0[row, j] + i * torch.tanh(pre[2])
            o = sig(pre[3] + p[2, j] * c)
            assert torch.isclose(c1[0, row, j], c)
            assert torch.isclose(h1[0, row, j], o * torch.tanh(c))
    torch.testing.assert_close(out[:, 0], h1[0])


def test_peephole_with_zero_peepholes_is_the_plain_lstm():
    torch.manual_seed(1)
    peep = PeepholeLSTM(5, 7)
    fused = nn.LSTM(5, 7, batch_first=True)
    with torch.no_grad():
        for name, value in fused.named_parameters():
            getattr(peep, name).copy_(value)
        peep.peephole_l0.zero_()
    x = torch.randn(3, 6, 5)
    torch.testing.assert_close(peep(x)[0], fused(x)[0], atol=1e-6, rtol=1e-5)


def test_peephole_gradients_match_finite_differences():
    torch.manual_seed(2)
    layer = PeepholeLSTM(3, 4).double()
    x = torch.randn(2, 5, 3, dtype=torch.double, requires_grad=True)
    h0 = torch.randn(1, 2, 4, dtype=torch.double, requires_grad=True)
    c0 = torch.randn(1, 2, 4, dtype=torch.double, requires_grad=True)

    def run(x, h0, c0, *params):
        values = dict(zip([n for n, _ in layer.named_parameters()], params, strict=True))
        out, (h, c) = torch.func.functional_call(layer, values, (x, (h0, c0)))
        return out.sum() + c.sum()

    assert torch.autograd.gradcheck(run, (x, h0, c0, *layer.parameters()))


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_cell_step_equals_the_fused_module(cell):
    torch.manual_seed(3)
    layer = make_layer(cell, 5, 6)
    x = torch.randn(4, 7, 5)
    expected, _ = layer(x)
    state = (torch.zeros(4, 6), torch.zeros(4, 6)) if cell == "lstm" else torch.zeros(4, 6)
    steps = []
    for t in range(7):
        gates_x = torch.nn.functional.linear(x[:, t], layer.weight_ih_l0, layer.bias_ih_l0)
        state = cell_step(cell, gates_x, state, layer.weight_hh_l0, layer.bias_hh_l0)
        steps.append(state[0] if cell == "lstm" else state)
    torch.testing.assert_close(torch.stack(steps, dim=1), expected, atol=1e-5, rtol=1e-4)


def test_peephole_hand_written_backward_equals_autograd_through_the_stepped_cell():
    torch.manual_seed(4)
    layer = PeepholeLSTM(4, 6)
    x = torch.randn(3, 9, 4, requires_grad=True)
    h0, c0 = torch.randn(1, 3, 6), torch.randn(1, 3, 6)
    out, (h, c) = layer(x, (h0, c0))
    (out.square().sum() + h.sum() + c.sum()).backward()
    expected = {name: p.grad.clone() for name, p in layer.named_parameters()}
    expected["x"] = x.grad.clone()
    layer.zero_grad()
    x.grad = None

    state = (h0[0], c0[0])  # the reference: autograd through the one-step cell function
    steps = []
    for t in range(9):
        gates_x = torch.nn.functional.linear(x[:, t], layer.weight_ih_l0, layer.bias_ih_l0)
        state = cell_step(
            "peephole-lstm", gates_x, state, layer.weight_hh_l0, layer.bias_hh_l0, layer.peephole_l0
        )
        steps.append(state[0])
    (torch.stack(steps, 1).square().sum() + state[0].sum() + state[1].sum()).backward()
    for name, p in layer.named_parameters():
        torch.testing.assert_close(p.grad, expected[name], atol=1e-5, rtol=1e-4, msg=name)
    torch.testing.assert_close(x.grad, expected["x"], atol=1e-5, rtol=1e-4)
