"""Gradient reach: the vanilla RNN's gradient vanishes with distance, the LSTM's cell carries it."""

import json

import torch
from test_train import make_corpus

from charrnn.config import TrainConfig
from charrnn.diagnostics import gradient_reach, summarise
from charrnn.model import CharRNN, ModelConfig
from charrnn.train import Trainer


def test_gradient_reach_measures_every_step_and_matches_autograd():
    torch.manual_seed(0)
    model = CharRNN(ModelConfig(vocab_size=5, cell="rnn", layers=1, hidden=6, embedding=3, dropout=0.0))
    ids, targets = torch.randint(0, 5, (2, 8)), torch.randint(0, 5, (2, 8))
    norms = gradient_reach(model, ids, targets, None)
    assert len(norms) == 8 and model.training  # training mode restored
    # by hand: the loss on the last character, differentiated by the input of the first step
    x = model.embed(ids).detach().requires_grad_(True)
    out, _ = model.rnns[0](x)
    loss = torch.nn.functional.cross_entropy(model.head(out[:, -1]), targets[:, -1])
    (grad,) = torch.autograd.grad(loss, x)
    assert abs(norms[7] - grad[:, 0].norm(dim=-1).mean().item()) < 1e-6
    assert abs(norms[0] - grad[:, 7].norm(dim=-1).mean().item()) < 1e-6


def test_vanilla_rnn_gradient_vanishes_faster_than_lstm():
    """Even untrained (forget gates half open), the LSTM keeps orders of magnitude more of it."""
    torch.manual_seed(5)
    ids, targets = torch.randint(0, 5, (4, 40)), torch.randint(0, 5, (4, 40))
    reach = {}
    for cell in ("rnn", "lstm"):
        torch.manual_seed(0)
        model = CharRNN(ModelConfig(vocab_size=5, cell=cell, layers=1, hidden=32, embedding=8, dropout=0.0))
        reach[cell] = dict(summarise(gradient_reach(model, ids, targets, None)))
    assert reach["rnn"][1] > 0.1 and reach["rnn"][32] < 1e-6  # vanishes geometrically
    assert reach["lstm"][32] > 100 * reach["rnn"][32]


def test_training_records_grad_norms(tmp_path):
    corpus = make_corpus("hello there general kenobi\n" * 30)
    model = ModelConfig(vocab_size=len(corpus.vocab), layers=1, hidden=16, embedding=8)
    config = TrainConfig(batch_size=4, seq_len=12, max_steps=20, eval_every=10, log_grad_norms=True)
    trainer = Trainer(corpus, model, config, tmp_path)
    trainer.run()
    lines = [json.loads(line) for line in (tmp_path / "grad_norms.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 10, 20]
    assert all(len(line["norms"]) == 12 for line in lines)
    assert trainer.grad_reach == lines[-1]["norms"]
