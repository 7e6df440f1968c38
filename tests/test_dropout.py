"""Dropout modes: where the masks are shared (across time, across rows) and where they are not."""

import pytest
import torch

from charrnn.model import CharRNN, ModelConfig


def _model(mode, **extra):
    torch.manual_seed(0)
    config = ModelConfig(
        vocab_size=9, layers=2, hidden=12, embedding=6, dropout=0.5, dropout_mode=mode, **extra
    )
    return CharRNN(config).train()


def _recorded_layer_inputs(model, ids):
    """The (N, T, D) input every recurrent layer received in one forward pass."""
    seen = []
    hooks = [layer.register_forward_pre_hook(lambda m, args: seen.append(args[0])) for layer in model.rnns]
    model(ids)
    for hook in hooks:
        hook.remove()
    return seen


@pytest.mark.parametrize("mode", ["locked", "variational"])
def test_locked_masks_are_shared_across_time_steps(mode):
    model = _model(mode)
    ids = torch.zeros(8, 20, dtype=torch.long)
    for x in _recorded_layer_inputs(model, ids):  # every layer's input: zero exactly where masked
        dropped = x == 0
        assert dropped.any() and not dropped.all()
        assert torch.equal(dropped, dropped[:, :1].expand_as(dropped))  # each row: one mask for all steps
        assert any(not torch.equal(dropped[0], dropped[r]) for r in range(1, 8))  # rows have their own
    masks = model.draw_masks(8, "cpu")
    assert all(m.shape[1] == 1 for m in masks.layer_inputs) and masks.output.shape == (8, 1, 12)


def test_standard_dropout_draws_a_new_mask_every_step():
    model = _model("standard")
    x = _recorded_layer_inputs(model, torch.zeros(8, 20, dtype=torch.long))[0]
    dropped = x == 0
    assert not torch.equal(dropped, dropped[:, :1].expand_as(dropped))


def test_variational_drops_recurrent_weights_once_per_window():
    model = _model("variational", recurrent_dropout=0.4)
    masks = model.draw_masks(3, "cpu")
    for layer, w in zip(model.rnns, masks.w_hh, strict=True):
        zeroed = (w == 0) & (layer.weight_hh_l0 != 0)
        assert 0.3 < zeroed.float().mean() < 0.5
        kept = ~zeroed
        torch.testing.assert_close(w[kept], layer.weight_hh_l0[kept] / 0.6)
    # the dropped matrix is what the layer used: gradients reach the raw weights only where kept
    ids = torch.randint(0, 9, (3, 10))
    logits, _ = model(ids, masks=masks)
    logits.sum().backward()
    grad = model.rnns[0].weight_hh_l0.grad
    assert torch.all(grad[masks.w_hh[0] == 0] == 0) and grad.abs().sum() > 0


def test_eval_mode_uses_no_dropout_in_any_mode():
    for mode in ("standard", "locked", "variational"):
        model = _model(mode, embedding_dropout=0.5).eval()
        ids = torch.randint(0, 9, (2, 7))
        torch.testing.assert_close(model(ids)[0], model(ids)[0])


def test_embedding_dropout_removes_whole_characters():
    model = _model("standard", embedding_dropout=0.5)
    ids = torch.arange(9).repeat(4, 3)  # every character, many times, in every row
    masks = model.draw_masks(4, "cpu")
    x = model.inputs(ids, masks)
    zero = (x == 0).all(-1)
    for char in range(9):
        where = ids == char
        assert zero[where].all() or not zero[where].any()  # a character is dropped everywhere or nowhere
    assert 0 < zero.float().mean() < 1
    kept = ~zero
    torch.testing.assert_close(x[kept], model.embed(ids)[kept] * 2)


@pytest.mark.parametrize("mode", ["standard", "locked"])
def test_one_hot_inputs_are_not_dropped_but_the_layers_between_are(mode):
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=9, input="onehot", embedding=9, layers=2, hidden=12, dropout=0.5)
    config.dropout_mode = mode
    model = CharRNN(config).train()
    first, second = _recorded_layer_inputs(model, torch.randint(0, 9, (4, 10)))
    assert torch.equal(first.sum(-1), torch.ones(4, 10))  # every character arrives
    assert (second == 0).float().mean() > 0.3  # the layer above is dropped at 0.5
