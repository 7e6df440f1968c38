"""Scheduled sampling: predictions are fed at the scheduled rate, and what is fed is the model's guess."""

import pytest
import torch
from test_train import make_corpus

from charrnn.cli import flag_name
from charrnn.config import TrainConfig
from charrnn.errors import CharrnnError
from charrnn.model import CharRNN, ModelConfig
from charrnn.scheduled import parse_schedule, scheduled_forward
from charrnn.train import Trainer


def _certain_model(favourite: int) -> CharRNN:
    """A model whose every prediction is `favourite` (its output bias dwarfs everything else)."""
    torch.manual_seed(0)
    model = CharRNN(ModelConfig(vocab_size=6, layers=1, hidden=8, embedding=4, dropout=0.0))
    with torch.no_grad():
        model.head.bias.fill_(-50.0)
        model.head.bias[favourite] = 50.0
    return model


@pytest.mark.parametrize("rate", [0.0, 0.3, 1.0])
def test_predictions_are_fed_at_the_given_rate(rate):
    model = _certain_model(favourite=5)
    ids = torch.randint(0, 5, (200, 30))  # the true text never contains character 5
    inputs = []
    model.step = _recording(model.step, inputs)
    logits, _, fed = scheduled_forward(model, ids, None, rate)
    fed_inputs = torch.stack(inputs, dim=1)
    assert logits.shape == (200, 30, 6)
    assert not fed[:, 0].any()  # the first step of a window always reads the true character
    assert abs(fed[:, 1:].float().mean().item() - rate) < 0.02
    assert torch.all(fed_inputs[fed] == 5)  # fed positions got the model's prediction
    assert torch.equal(fed_inputs[~fed], ids[~fed])  # the others got the truth


def _recording(step, inputs):
    def wrapper(ids, state, masks):
        inputs.append(ids.clone())
        return step(ids, state, masks)

    return wrapper


def test_at_rate_zero_it_equals_teacher_forcing():
    torch.manual_seed(1)
    model = CharRNN(ModelConfig(vocab_size=7, cell="gru", layers=2, hidden=10, embedding=5, dropout=0.0))
    ids = torch.randint(0, 7, (3, 12))
    stepped, _, _ = scheduled_forward(model, ids, None, 0.0)
    torch.testing.assert_close(stepped, model(ids)[0], atol=1e-5, rtol=1e-4)


def test_schedules_parse_and_ramp():
    assert parse_schedule("0.25").rate(0.7) == 0.25
    ramp = parse_schedule("0:0.5")
    assert ramp.rate(0.0) == 0.0 and ramp.rate(0.5) == 0.25 and ramp.rate(2.0) == 0.5
    for bad in ("1.5", "a", "0:2", "0:0.1:0.2", "-0.1"):
        with pytest.raises(CharrnnError) as caught:
            parse_schedule(bad)
        assert caught.value.render(flag_name).startswith("--scheduled-sampling")


def test_training_logs_the_rate_and_share_fed(tmp_path):
    corpus = make_corpus("abcabcabd " * 60)
    model = ModelConfig(vocab_size=len(corpus.vocab), layers=1, hidden=16, embedding=8, dropout=0.0)
    config = TrainConfig(batch_size=4, seq_len=16, max_steps=20, eval_every=10, scheduled_sampling=[0.5, 0.5])
    result = Trainer(corpus, model, config, tmp_path).run()
    for entry in result.progress.history:
        assert entry["ss_rate"] == 0.5 and 0.3 < entry["ss_fed"] < 0.7
