import pytest
import torch

from charrnn.cli import flag_name
from charrnn.errors import CharrnnError
from charrnn.model import CharRNN, ModelConfig, detach_state


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn", "peephole-lstm"])
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


def test_one_hot_input_equals_a_frozen_identity_embedding():
    torch.manual_seed(0)
    onehot = CharRNN(ModelConfig(vocab_size=7, input="onehot", embedding=7, layers=2, hidden=9, dropout=0.0))
    embedded = CharRNN(
        ModelConfig(vocab_size=7, input="embedding", embedding=7, layers=2, hidden=9, dropout=0.0)
    )
    with torch.no_grad():
        embedded.embed.weight.copy_(torch.eye(7))
        for name, value in onehot.named_parameters():
            embedded.get_parameter(name).copy_(value)
    assert onehot.embed is None and onehot.rnns[0].weight_ih_l0.shape == (4 * 9, 7)
    ids = torch.randint(0, 7, (3, 11))
    torch.testing.assert_close(onehot(ids)[0], embedded(ids)[0])


def test_tied_weights_are_one_tensor():
    model = CharRNN(ModelConfig(vocab_size=6, embedding=8, hidden=8, layers=1, weight_tying=True))
    assert model.head.weight is model.embed.weight
    assert count_unique(model) == sum(p.numel() for p in model.parameters())
    logits, _ = model(torch.randint(0, 6, (2, 5)))
    logits.sum().backward()
    assert model.embed.weight.grad is model.head.weight.grad  # one gradient from both uses
    untied = CharRNN(ModelConfig(vocab_size=6, embedding=8, hidden=8, layers=1))
    assert sum(p.numel() for p in untied.parameters()) - count_unique(model) == 6 * 8


def count_unique(model):
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"weight_tying": True, "embedding": 4, "hidden": 8}, "--embedding equal to --hidden"),
        ({"weight_tying": True, "input": "onehot"}, "needs --input embedding"),
        ({"dropout_mode": "zoneout"}, "--dropout-mode"),
        ({"cell": "transformer"}, "--cell"),
    ],
)
def test_impossible_settings_are_refused_with_the_flag_named(settings, message):
    """The library names the setting; the command line shows it as its flag."""
    with pytest.raises(CharrnnError) as caught:
        CharRNN(ModelConfig(vocab_size=5, **settings))
    assert message in caught.value.render(flag_name)
    assert caught.value.setting in ("embedding", "weight_tying", "dropout_mode", "cell")
