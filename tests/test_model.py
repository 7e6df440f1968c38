import pytest
import torch

from charrnn.model import CharRNN, ModelConfig, detach_state


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_carried_state_equals_one_long_pass(cell):
    torch.manual_seed(0)
    model = CharRNN(
        ModelConfig(vocab_size=11, cell=cell, layers=2, hidden=16, embedding=8, dropout=0.0)
    ).eval()
    ids = torch.randint(0, 11, (3, 24))
    with torch.no_grad():
        whole, _ = model(ids)
        first, state = model(ids[:, :10])
        second, _ = model(ids[:, 10:], detach_state(state))
    torch.testing.assert_close(torch.cat([first, second], dim=1), whole)


def test_detached_state_stops_gradients_at_the_window_edge():
    torch.manual_seed(0)
    model = CharRNN(ModelConfig(vocab_size=5, layers=1, hidden=8, embedding=4, dropout=0.0))
    ids = torch.randint(0, 5, (2, 6))
    _, state = model(ids)
    carried = detach_state(state)
    assert all(not s.requires_grad for s in carried)
    out, _ = model(ids, carried)
    out.sum().backward()  # would fail with "backward through the graph a second time" if not cut
    assert model.embed.weight.grad is not None


def test_shapes():
    model = CharRNN(ModelConfig(vocab_size=7, cell="lstm", layers=3, hidden=10, embedding=5))
    logits, (h, c) = model(torch.zeros(4, 9, dtype=torch.uint8))
    assert logits.shape == (4, 9, 7) and h.shape == c.shape == (3, 4, 10)
