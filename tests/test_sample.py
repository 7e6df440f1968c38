import pytest
import torch

from charrnn.engine import Engine, Sampling, _RowSettings, choose, filter_logits
from charrnn.errors import BadSetting
from charrnn.model import CharRNN, ModelConfig
from charrnn.sample import SamplingConfig, samples
from charrnn.vocab import Vocabulary


def _choose(logits, temperature, generator, top_k=None, top_p=None):
    rows = _RowSettings.of([Sampling(temperature, top_k, top_p)] * logits.size(0), torch.device("cpu"))
    return choose(logits, rows, torch.rand(logits.size(0), generator=generator, dtype=torch.float64))[0]


def _model_and_vocab():
    torch.manual_seed(0)
    vocab = Vocabulary.from_text("abcdefgh\n")
    model = CharRNN(ModelConfig(vocab_size=len(vocab), layers=1, hidden=16, embedding=8)).eval()
    return model, vocab


def _text(model, vocab, **kw):
    return [g.text for g in samples(Engine(model, vocab), "abc", SamplingConfig(**kw))]


def test_temperature_zero_is_greedy():
    logits = torch.tensor([[0.1, 2.0, -1.0], [3.0, 0.0, 2.9]])
    assert _choose(logits, 0.0, None).tolist() == [1, 0]


def test_top_k_keeps_only_the_k_best():
    logits = torch.tensor([[1.0, 4.0, 3.0, 2.0]])
    assert torch.isfinite(filter_logits(logits, top_k=2)).tolist() == [[False, True, True, False]]
    g = torch.Generator().manual_seed(0)
    draws = {int(_choose(logits, 5.0, g, top_k=2)) for _ in range(200)}
    assert draws == {1, 2}


def test_top_p_keeps_the_smallest_nucleus():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    logits = probs.log()
    assert torch.isfinite(filter_logits(logits, top_p=0.7)).tolist() == [[True, True, False, False]]
    assert torch.isfinite(filter_logits(logits, top_p=0.5)).tolist() == [[True, False, False, False]]
    assert torch.isfinite(filter_logits(logits, top_p=1.0)).all()


def test_low_temperature_sharpens_high_flattens():
    logits = torch.tensor([[2.0, 1.0, 0.0]]).expand(4000, 3)
    g = torch.Generator().manual_seed(0)
    cold = _choose(logits, 0.2, g).bincount(minlength=3)
    hot = _choose(logits, 5.0, g).bincount(minlength=3)
    assert cold[0] > 3900
    assert hot[2] > 900  # near-uniform: the least likely class is drawn often


def test_same_seed_same_text_other_seed_other_text():
    model, vocab = _model_and_vocab()
    a = _text(model, vocab, length=80, seed=5)
    assert a == _text(model, vocab, length=80, seed=5)
    assert a != _text(model, vocab, length=80, seed=6)


def test_samples_in_a_batch_differ_and_have_the_length_asked():
    model, vocab = _model_and_vocab()
    texts = _text(model, vocab, length=60, seed=1, num_samples=3)
    assert len(texts) == 3 and all(len(t) == 60 for t in texts)
    assert len(set(texts)) == 3


def test_greedy_generation_is_deterministic_whatever_the_seed():
    model, vocab = _model_and_vocab()
    assert _text(model, vocab, length=40, temperature=0, seed=1) == _text(
        model, vocab, length=40, temperature=0, seed=2
    )


def test_rows_with_different_settings_in_one_batch_each_follow_their_own():
    logits = torch.tensor([[1.0, 4.0, 3.0, 2.0]]).expand(3000, 4)
    settings = [Sampling(0.0), Sampling(5.0, top_k=2), Sampling(5.0, top_p=0.3)] * 1000
    rows = _RowSettings.of(settings, torch.device("cpu"))
    u = torch.rand(3000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ids, _, _ = choose(logits, rows, u)
    assert set(ids[0::3].tolist()) == {1}  # greedy
    assert set(ids[1::3].tolist()) == {1, 2}  # top-2
    assert set(ids[2::3].tolist()) == {1}  # at temperature 5 the best has about 0.35 >= 0.3 alone


def test_a_symbol_the_filter_removed_is_never_drawn_even_at_the_top_of_the_range():
    logits = torch.tensor([[0.0, 5.0, 0.0]]).expand(3, 3)
    rows = _RowSettings.of([Sampling(1.0, top_k=1)] * 3, torch.device("cpu"))
    u = torch.tensor([0.0, 0.5, 1.0 - 2**-53], dtype=torch.float64)
    assert choose(logits, rows, u)[0].tolist() == [1, 1, 1]


@pytest.mark.parametrize(
    "kwargs",
    [{"temperature": -1.0}, {"temperature": float("nan")}, {"top_k": 0}, {"top_p": 0.0}, {"top_p": 1.5}],
)
def test_sampling_settings_out_of_range_are_refused_by_name(kwargs):
    with pytest.raises(BadSetting) as caught:
        Sampling(**kwargs)
    assert next(iter(kwargs)) in str(caught.value)
