"""The numpy path of the engine (numpy_step.py) computes what the PyTorch path does."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from charrnn.engine import Engine, Sampling, _RowSettings
from charrnn.engine import choose as torch_choose
from charrnn.model import CharRNN, ModelConfig
from charrnn.numpy_step import NumpyStepper, choose
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
        state = stepper.split_state(model.init_state(2, "cpu"))
        np_state = fast.state_in(state)
        ids = torch.tensor([1, 4])
        for _ in range(30):
            logits = stepper.step(ids, state)
            np_logits = fast.step(ids.numpy(), np_state)
            np.testing.assert_allclose(np_logits, logits.numpy(), rtol=1e-4, atol=1e-5)
            ids = logits.argmax(dim=-1)
    for ours, theirs in zip(fast.state_out(np_state), state, strict=True):
        for a, b in zip(
            ours if cell == "lstm" else [ours], theirs if cell == "lstm" else [theirs], strict=True
        ):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("temperature", [1.0, 0.5, 0.0])
def test_the_numpy_draw_is_the_pytorch_draw(temperature):
    torch.manual_seed(1)
    logits = torch.randn(2, 30) * 3
    settings = _RowSettings.of([Sampling(temperature)] * 2, torch.device("cpu"))
    temps = None if settings.plain else settings.temperature.numpy()
    greedy = settings.greedy.numpy() if settings.greedy is not None else None
    for u in np.linspace(0, 1 - 2**-24, 97, dtype=np.float32):
        uu = np.array([u, 1 - u], dtype=np.float32)
        ids, lps, _ = torch_choose(logits, settings, torch.from_numpy(uu))
        np_ids, np_lps = numpy_choose(logits.numpy(), temps, greedy, uu)
        assert np_ids.tolist() == ids.tolist()
        np.testing.assert_allclose(np_lps, lps.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_one_row_writes_the_same_text_on_either_path(cell):
    model, vocab = _model(cell)
    fast, slow = Engine(model, vocab), Engine(model, vocab)
    slow._numpy = None
    assert fast._numpy is not None
    for seed in range(5):
        config = SamplingConfig(length=150, seed=seed, temperature=0.8)
        assert next(samples(fast, "ab", config)).text == next(samples(slow, "ab", config)).text


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_the_one_row_step_and_draw_are_the_batched_ones(cell):
    from charrnn.numpy_step import choose_one

    model, _ = _model(cell)
    fast = NumpyStepper(Stepper(model))
    with torch.inference_mode():
        batched = fast.state_in(Stepper(model).split_state(model.init_state(1, "cpu")))
    one = [
        tuple(a[0].copy() for a in layer) if isinstance(layer, tuple) else layer[0].copy()
        for layer in batched
    ]
    symbol = 2
    for t in range(25):
        wide = fast.step(np.array([symbol]), batched)
        narrow = fast.step_one(symbol, one)
        np.testing.assert_allclose(narrow, wide[0], rtol=1e-5, atol=1e-6)
        u = np.float32((t * 0.37) % 1)
        ids, lps = choose(wide, None, None, np.array([u]))
        got, lp = choose_one(narrow, None, False, float(u))
        assert got == int(ids[0]) and lp == pytest.approx(float(lps[0]), rel=1e-5, abs=1e-6)
        symbol = got
