"""The numpy path of the engine (numpy_step.py) computes what the PyTorch path does."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from charrnn.engine import Engine, Sampling, _RowSettings
from charrnn.engine import choose as torch_choose
from charrnn.model import CharRNN, ModelConfig
from charrnn.numpy_step import NumpyStepper
from charrnn.numpy_step import choose as numpy_choose
from charrnn.sample import SamplingConfig, samples
from charrnn.stepper import Stepper
from charrnn.vocab import Vocabulary


def _model(cell: str):
    torch.manual_seed(0)
    vocab = Vocabulary.from_text("abcdefgh \n")
    model = CharRNN(ModelConfig(vocab_size=len(vocab), layers=2, hidden=24, embedding=8, cell=cell)).eval()
    return model, vocab


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_the_numpy_step_gives_the_pytorch_steps_logits_and_state(cell):
    model, _ = _model(cell)
    stepper = Stepper(model)
    fast = NumpyStepper(stepper)
    with torch.inference_mode():
        state = stepper.split_state(model.init_state(1, "cpu"))
        np_state = fast.state_in(state)
        ids = torch.tensor([1])
        for _ in range(30):
            logits = stepper.step(ids, state)
            np_logits = fast.step(int(ids[0]), np_state)
            np.testing.assert_allclose(np_logits, logits[0].numpy(), rtol=1e-4, atol=1e-5)
            ids = logits.argmax(dim=-1)
    for ours, theirs in zip(fast.state_out(np_state), state, strict=True):
        for a, b in zip(
            ours if cell == "lstm" else [ours], theirs if cell == "lstm" else [theirs], strict=True
        ):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("temperature", [1.0, 0.5, 0.0])
def test_the_numpy_draw_is_the_pytorch_draw(temperature):
    torch.manual_seed(1)
    logits = torch.randn(1, 30) * 3
    settings = _RowSettings.of([Sampling(temperature)], torch.device("cpu"))
    t = None if settings.plain else float(settings.temperature[0, 0])
    greedy = settings.greedy is not None and bool(settings.greedy[0])
    for u in np.linspace(0, 1 - 2**-24, 97, dtype=np.float32):
        ids, lps, _ = torch_choose(logits, settings, torch.tensor([u]))
        symbol, logprob = numpy_choose(logits[0].numpy(), t, greedy, float(u))
        assert symbol == int(ids[0])
        assert logprob == pytest.approx(float(lps[0]), rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_one_row_writes_the_same_text_on_either_path(cell):
    model, vocab = _model(cell)
    fast, slow = Engine(model, vocab), Engine(model, vocab)
    slow._numpy = None
    assert fast._numpy is not None
    for seed in range(5):
        config = SamplingConfig(length=150, seed=seed, temperature=0.8)
        assert next(samples(fast, "ab", config)).text == next(samples(slow, "ab", config)).text
